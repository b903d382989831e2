"""An S3-compatible server on loopback for tests/objstore.rs: moto's server
(an independent implementation of the S3 API, PyPI `moto[server]`) on an
ephemeral port of 127.0.0.1, with signature checking on.

    python3 tests/s3_server.py [--tls CERT KEY] BUCKET...

Creates an IAM user allowed s3:* with an access key, then the buckets named,
then turns moto's authentication on (every later request must carry a valid
AWS Signature Version 4 of that key), prints one JSON line
{"port", "access_key", "secret_key"} and serves until its standard input
closes (the test ends or dies). With --tls it serves https with that
certificate and key (PEM).
"""

import json
import logging
import sys
import threading

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

args = sys.argv[1:]
tls = None
if args[:1] == ["--tls"]:
    tls = (args[1], args[2])
    args = args[3:]

# A line per request on stderr would only bury a failure's traceback.
logging.getLogger("werkzeug").setLevel(logging.ERROR)

# What moto's ThreadedMotoServer does, plus TLS; port 0: the kernel picks.
app = DomainDispatcherApplication(create_backend_app)
server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=tls)
port = server.server_address[1]
threading.Thread(target=server.serve_forever, daemon=True).start()
endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{port}"

if tls:
    # The set-up calls below skip verification (the client side of the
    # test does verify); no warning for each.
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

# Authentication is off until reset-auth below: these set-up calls may be
# signed with anything.
setup = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="setup",
    aws_secret_access_key="setup",
    verify=False,
)
iam = boto3.client("iam", **setup)
iam.create_user(UserName="pecd")
iam.put_user_policy(
    UserName="pecd",
    PolicyName="s3",
    PolicyDocument=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
    ),
)
key = iam.create_access_key(UserName="pecd")["AccessKey"]
s3 = boto3.client("s3", **setup)
for bucket in args:
    s3.create_bucket(Bucket=bucket)

# From now on every request is authenticated (moto lets through this many
# requests without authentication: none). Set in-process, the server being
# this process, so that no unverified https request is needed.
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin

settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
ActionAuthenticatorMixin.request_count = 0

print(
    json.dumps(
        {
            "port": port,
            "access_key": key["AccessKeyId"],
            "secret_key": key["SecretAccessKey"],
        }
    ),
    flush=True,
)
sys.stdin.read()
server.shutdown()
