//! The seam between the store's transaction scripts and its backends.
//!
//! [`Tx`] is the database inside one store call: every typed operation
//! the scripts above the backends call (`Store::commit`'s rows, the seal,
//! a cancellation, each typed read). A script is written once over
//! `&dyn Tx`; the SQLite backend (`sqlite::Db`, inside its writer thread's
//! group commit) and the PostgreSQL one (`postgres::PgDb`, inside one
//! transaction of a pooled connection) each implement it. The operations
//! are listed once, in [`with_tx_ops`]: the trait and each backend's
//! implementation (a delegation to the backend's inherent method of the
//! same name) are generated from that list, so adding an operation is one
//! line here and one method in each backend.

/// Hands the list of [`Tx`] operations to the macro `$cb`, after `$arg`.
macro_rules! with_tx_ops {
    ($cb:ident ! ($($arg:tt)*)) => {
        $cb! { ($($arg)*)
        // health
        /// Prove the writer commits: the `health` row's time.
        fn health_touch(now: i64) -> crate::store::Result<()>;
        // users
        /// Insert a user; false if it already exists.
        fn user_add(address: &str, hash: &str, now_ms: i64) -> crate::store::Result<bool>;
        /// Replace a user's password hash and end every web session of the
        /// user; false if there is no such user.
        fn user_set_password(address: &str, hash: &str) -> crate::store::Result<bool>;
        /// Remove a user with its second factor (recovery codes, an
        /// enrolment in progress), app passwords, web sessions and API
        /// tokens; false if
        /// there was none. The Maildir is kept (mail is evidence).
        fn user_delete(address: &str) -> crate::store::Result<bool>;
        /// Set a user's quota; false if there is no such user.
        fn user_set_quota(address: &str, quota: crate::store::users::Quota) -> crate::store::Result<bool>;
        /// A user's quota setting, `None` if there is no such user.
        fn user_quota(address: &str) -> crate::store::Result<Option<crate::store::users::Quota>>;
        /// Every user with their quota setting, sorted by address.
        fn users_with_quotas() -> crate::store::Result<Vec<(String, crate::store::users::Quota)>>;
        /// The stored hash of a user.
        fn user_password_hash(address: &str) -> crate::store::Result<Option<String>>;
        /// Whether a user exists.
        fn user_exists(address: &str) -> crate::store::Result<bool>;
        /// Turn on the web login's second factor with `secret` (as stored:
        /// sealed by `auth::totp_key`), ending every web session of the user
        /// and forgetting recovery codes and any enrolment (they belong to
        /// another secret); false if there is no such user.
        fn totp_set(address: &str, secret: &str, now_ms: i64) -> crate::store::Result<bool>;
        /// Turn the second factor off with its recovery codes, ending every
        /// web session of the user; false if it was not on.
        fn totp_clear(address: &str) -> crate::store::Result<bool>;
        /// The second-factor secret (as stored) of a user who turned it on.
        fn totp_secret(address: &str) -> crate::store::Result<Option<String>>;
        /// Every second-factor secret as stored, by address (re-sealing at start).
        fn totp_secrets() -> crate::store::Result<Vec<(String, String)>>;
        /// Replace a stored secret by another form of the same secret, if it
        /// is still `old` (a concurrent `totp enable` wins); whether it was
        /// replaced.
        fn totp_reseal(address: &str, old: &str, new: &str) -> crate::store::Result<bool>;
        /// Judge and record one second-factor attempt of `address` at
        /// `now_ms`: `step` is the time step the code matched, `None` for a
        /// wrong code. One transaction, so parallel attempts cannot both use
        /// one step nor slip past the lock.
        fn totp_attempt(address: &str, step: Option<i64>, now_ms: i64) -> crate::store::Result<crate::store::users::TotpOutcome>;
        // account self-service
        /// Replace a user's password hash, ending every web session of the
        /// user but the one of token `keep`; false if there is no such user.
        fn user_change_password(address: &str, hash: &str, keep: &str) -> crate::store::Result<bool>;
        /// Store a new app password of `address` (its digest only).
        fn app_password_add(address: &str, id: &str, label: &str, digest: &[u8; 32], now_ms: i64) -> crate::store::Result<crate::store::account::AppPasswordAdded>;
        /// The app passwords of `address`, oldest first.
        fn app_passwords(address: &str) -> crate::store::Result<Vec<crate::store::account::AppPassword>>;
        /// Remove app password `id` of `address`; false if `address` has
        /// none of that id (another user's id included).
        fn app_password_revoke(address: &str, id: &str) -> crate::store::Result<bool>;
        /// The app password of `address` with this digest.
        fn app_password_find(address: &str, digest: &[u8; 32]) -> crate::store::Result<Option<crate::store::account::AppPassword>>;
        /// Record a use of app password `id` at `now_ms` (never moving it back).
        fn app_password_used(id: &str, now_ms: i64) -> crate::store::Result<()>;
        /// Start (or restart) a second-factor enrolment of `address` with
        /// `secret` (sealed); false if there is no such user.
        fn totp_pending_set(address: &str, secret: &str, now_ms: i64) -> crate::store::Result<bool>;
        /// The enrolment in progress of `address`: (sealed secret, started at).
        fn totp_pending(address: &str) -> crate::store::Result<Option<(String, i64)>>;
        /// Finish the enrolment of `address` whose pending secret is still
        /// `secret`: the second factor on (its code of time step `step`
        /// used), `recovery` its codes (digests), the user's web sessions
        /// but `keep` ended; false if that enrolment is gone.
        fn totp_confirm(address: &str, secret: &str, step: i64, recovery: &[[u8; 32]], now_ms: i64, keep: &str) -> crate::store::Result<bool>;
        /// Turn the second factor of `address` off (recovery codes and any
        /// enrolment with it), ending the user's web sessions but `keep`;
        /// false if it was not on.
        fn totp_disable_keeping(address: &str, keep: &str) -> crate::store::Result<bool>;
        /// Judge and record one recovery code (its digest) of `address`: a
        /// code of the user's is accepted once; a wrong one counts with the
        /// wrong TOTP codes towards the lock.
        fn totp_recovery_attempt(address: &str, digest: &[u8; 32], now_ms: i64) -> crate::store::Result<crate::store::users::TotpOutcome>;
        /// How many unused recovery codes `address` has.
        fn totp_recovery_left(address: &str) -> crate::store::Result<i64>;
        /// Set the ordinary address told of each new PEC of `address`
        /// (empty: none), keeping the notices' state; false if there is no
        /// such user.
        fn notice_set(address: &str, email: &str) -> crate::store::Result<bool>;
        /// The ordinary address told of each new PEC of `address`, with
        /// the notices' state.
        fn notice_get(address: &str) -> crate::store::Result<Option<(String, crate::flow::notice::State)>>;
        /// Move the notices' state of `address` from `seen` to `then`;
        /// false if it is no longer `seen` (another notice job moved it, or
        /// the address was removed).
        fn notice_swap(address: &str, seen: &crate::flow::notice::State, then: &crate::flow::notice::State) -> crate::store::Result<bool>;
        // sessions
        /// Store a new session, first dropping every session past `idle_ms` of
        /// disuse or `max_ms` of age, and the least recently used of the user's
        /// beyond [`MAX_PER_USER`].
        fn session_create(token: &str, address: &str, csrf: &str, now_ms: i64, idle_ms: i64, max_ms: i64) -> crate::store::Result<()>;
        /// The session of `token`, whatever its age (the caller judges expiry).
        fn session_find(token: &str) -> crate::store::Result<Option<crate::store::sessions::Session>>;
        /// Mark a session used at `now_ms`.
        fn session_touch(token: &str, now_ms: i64) -> crate::store::Result<()>;
        /// End one session.
        fn session_end(token: &str) -> crate::store::Result<()>;
        // messages
        /// Record an accepted message.
        fn message_insert(m: &crate::store::messages::Accepted) -> crate::store::Result<()>;
        /// The daticert.xml of a message we accepted, if we did.
        fn message_daticert(identificativo: &str) -> crate::store::Result<Option<String>>;
        /// The message we accepted as `identificativo`, if we did.
        fn message_get(identificativo: &str) -> crate::store::Result<Option<crate::store::messages::Accepted>>;
        /// When we accepted a message (Unix ms), if we did.
        fn message_accepted_at(identificativo: &str) -> crate::store::Result<Option<i64>>;
        /// Messages `sender` submitted, newest first.
        fn sent_by(sender: &str, offset: usize, limit: usize) -> crate::store::Result<Vec<crate::store::messages::SentMessage>>;
        /// The message `sender` submitted with this Message-ID (brackets optional).
        fn sent_with_msgid(sender: &str, msgid: &str) -> crate::store::Result<Option<crate::store::messages::SentMessage>>;
        // queue
        /// Add a job unless one with the same key exists. True if added. Its blob
        /// must be stored already ([`Db::job_enqueue_named`] resolves a batch's new ones).
        fn job_enqueue(j: &crate::store::queue::NewJob, now: i64) -> crate::store::Result<bool>;
        /// [`Db::job_enqueue`] with the blob's spool name given.
        fn job_enqueue_named(j: &crate::store::queue::NewJob, blob: Option<&str>, now: i64) -> crate::store::Result<bool>;
        /// Queue a job as [`Db::job_enqueue_named`] does, already claimed by
        /// `node` until `until` (its first claim, fence 1); gives its id when
        /// it was new.
        fn job_enqueue_claimed(j: &crate::store::queue::NewJob, blob: Option<&str>, now: i64, node: &str, until: i64) -> crate::store::Result<Option<crate::store::queue::JobId>>;
        /// The earliest due time of any pending job or live timer.
        fn jobs_next_due() -> crate::store::Result<Option<i64>>;
        /// One job by id.
        fn job_get(id: crate::store::queue::JobId) -> crate::store::Result<Option<crate::store::queue::Job>>;
        /// The jobs of `which`, oldest first.
        fn job_list(which: crate::store::queue::Listing) -> crate::store::Result<Vec<crate::store::queue::Job>>;
        /// The job finished.
        fn job_mark_done(id: crate::store::queue::JobId, now: i64) -> crate::store::Result<()>;
        /// The job failed for good.
        fn job_mark_failed(id: crate::store::queue::JobId, error: &str, now: i64) -> crate::store::Result<()>;
        /// The job failed for now; try again at `due_at`.
        fn job_reschedule(id: crate::store::queue::JobId, error: &str, due_at: i64, now: i64) -> crate::store::Result<()>;
        /// Make pending jobs due now (one, or all with `None`; a held job, or a
        /// failed one whose message bytes are still kept, only by its id). Returns
        /// how many.
        fn jobs_retry_now(id: Option<crate::store::queue::JobId>, now: i64) -> crate::store::Result<usize>;
        /// Put every failed job whose message bytes are still kept back in the
        /// queue, due now (`pecd queue retry --failed`). Returns how many.
        fn jobs_retry_failed(now: i64) -> crate::store::Result<usize>;
        /// How many jobs are pending, held and failed (the states an operator
        /// watches; finished ones are only kept a week for idempotency).
        fn job_counts() -> crate::store::Result<Vec<(crate::store::queue::JobState, i64)>>;
        /// Cancel a pending job. True if it was pending.
        fn job_cancel(id: crate::store::queue::JobId, now: i64) -> crate::store::Result<bool>;
        /// Start both deadlines for a certified recipient (no-op if already started).
        fn timer_start(identificativo: &str, recipient: &str, sent_at: i64, preavviso_due: i64, expire_due: i64) -> crate::store::Result<()>;
        /// A presa in carico arrived: only the 12 h warning stops. True if a live timer matched.
        fn timer_presa(identificativo: &str, recipient: &str, at: i64) -> crate::store::Result<bool>;
        /// A consegna or errore-consegna (or the final notice) closes the recipient.
        /// Gives its acceptance time (`sent_at`, ms) if it was open.
        fn timer_close(identificativo: &str, recipient: &str, at: i64, by: &str) -> crate::store::Result<Option<i64>>;
        /// When each certified recipient of a message was taken in charge (Unix ms),
        /// from the verified presa in carico that stopped its timer.
        fn presa_times(identificativo: &str) -> crate::store::Result<Vec<(String, i64)>>;
        /// Disarm one deadline after its notice was queued. True if it was armed.
        fn timer_fired(t: &crate::store::queue::DueTimer) -> crate::store::Result<bool>;
        /// Whether a pending job (or a failed one younger than `failed_keep_ms`,
        /// kept for the operator) still names bytes in spool segment `segment`.
        fn segment_in_use(segment: &str, now: i64, failed_keep_ms: i64) -> crate::store::Result<bool>;
        /// Spool segment `segment` was removed: no row names its bytes any more.
        fn forget_segment(segment: &str) -> crate::store::Result<()>;
        /// Drop finished jobs older than `keep_ms` (their idempotency keys are only
        /// needed while a replay after a crash is possible). Returns rows removed.
        fn jobs_purge_finished(now: i64, keep_ms: i64) -> crate::store::Result<usize>;
        /// After the final notice the relay stops: fail pending relays of the busta
        /// whose certified recipients are all closed.
        fn stop_relays(identificativo: &str, now: i64) -> crate::store::Result<()>;
        /// Relay jobs still pending (`pecd bench --dead-peer`).
        fn pending_relays() -> crate::store::Result<i64>;
        // claims
        /// Claim up to `limit` due jobs nobody holds (or whose claim
        /// lapsed), other than those in `skip`, for `node` until `until`:
        /// mailbox deliveries first, then by due time. Another node's lapsed
        /// claim counts as a crash of the job, held at the `MAX_CRASHES`-th.
        fn claim_jobs(node: &str, now: i64, until: i64, limit: usize, skip: &std::collections::HashSet<crate::store::queue::JobId>) -> crate::store::Result<crate::store::claims::JobClaims>;
        /// Claim up to `limit` due deadlines of each kind nobody holds (or
        /// whose claim lapsed) for `node` until `until`, each with its new
        /// fencing token.
        fn claim_timers(node: &str, now: i64, until: i64, limit: usize) -> crate::store::Result<Vec<(crate::store::queue::DueTimer, i64)>>;
        /// Push the claims `node` still holds among `held` to `until`; gives
        /// the ones another claim replaced.
        fn renew_claims(node: &str, until: i64, held: &[crate::store::queue::Fence]) -> crate::store::Result<Vec<crate::store::queue::Fence>>;
        /// Whether `f`'s claim still holds (its node holds the work under
        /// that token), checked in the transaction that commits its outcome:
        /// nobody can claim the work again before that transaction ends.
        fn claim_holds(f: &crate::store::queue::Fence) -> crate::store::Result<bool>;
        /// Give up the claim of `f` if it still holds.
        fn release_claim(f: &crate::store::queue::Fence) -> crate::store::Result<bool>;
        /// Give up every claim `node` holds; how many.
        fn release_node(node: &str) -> crate::store::Result<usize>;
        /// The claims an earlier run of `node` left: each pending job counted
        /// as a crash (held at the `MAX_CRASHES`-th), every claim released.
        /// Gives the jobs run again and the held.
        fn recover_node(node: &str, now: i64) -> crate::store::Result<(Vec<crate::store::queue::JobId>, Vec<crate::store::queue::Job>)>;
        /// The claim of `what` ends with the batch that ended its work.
        fn claim_end(what: &crate::store::queue::Claimed) -> crate::store::Result<()>;
        /// Record that `node` (started at `started_at`, running `version`)
        /// is alive at `now`.
        fn node_beat(node: &str, started_at: i64, now: i64, version: &str) -> crate::store::Result<()>;
        /// Record a clean stop of `node` at `now`.
        fn node_stop(node: &str, now: i64) -> crate::store::Result<()>;
        /// Every node that ever beat, by name.
        fn nodes_seen() -> crate::store::Result<Vec<crate::store::cluster::NodeSeen>>;
        /// The claims each node holds (live and lapsed at `now`), by node.
        fn claims_per_node(now: i64) -> crate::store::Result<Vec<crate::store::cluster::ClaimsHeld>>;
        // login failure counts
        /// The failure count kept under `key`, if any; on PostgreSQL the
        /// key stays locked until the transaction ends (also while it has
        /// no row yet), so two nodes never both update it from one value.
        fn login_count_take(key: &crate::throttle::counts::CountKey) -> crate::store::Result<Option<crate::throttle::counts::FailureCount>>;
        /// Keep `count` under `key` (`None`: forget it).
        fn login_count_put(key: &crate::throttle::counts::CountKey, count: Option<&crate::throttle::counts::FailureCount>) -> crate::store::Result<()>;
        /// Forget every count whose last attempt was before `before` (Unix
        /// ms); how many.
        fn login_counts_forget(before: i64) -> crate::store::Result<usize>;
        // api
        /// Make an API token for an existing user with fewer than
        /// `api::MAX_PER_USER`; only its hash is stored.
        fn token_create(address: &str, name: &str, scopes: crate::store::api::Scopes, now_ms: i64) -> crate::store::Result<std::result::Result<crate::store::api::NewToken, crate::store::api::CreateRefused>>;
        /// The tokens of `address` (or all), oldest first.
        fn token_list(address: Option<&str>) -> crate::store::Result<Vec<crate::store::api::ApiToken>>;
        /// The token stored under `hash`.
        fn token_find(hash: &[u8; 32]) -> crate::store::Result<Option<crate::store::api::ApiToken>>;
        /// Mark a token used at `now_ms` (never back in time).
        fn token_touch(id: &str, now_ms: i64) -> crate::store::Result<()>;
        /// Delete a token (of `address` only, when given); whether it existed.
        fn token_revoke(id: &str, address: Option<&str>) -> crate::store::Result<bool>;
        /// Claim `key` of `address` for a request whose body hashes to
        /// `body_hash` and which submits `msgid`, after forgetting every key
        /// older than `ttl_ms`. Of two concurrent claims of one key exactly
        /// one gets `Fresh`.
        fn idempotency_claim(address: &str, key: &str, body_hash: &[u8; 32], msgid: &str, now_ms: i64, ttl_ms: i64) -> crate::store::Result<crate::store::api::KeyClaim>;
        /// Take `key` over from the unanswered attempt `old_msgid`; whether
        /// this caller won it.
        fn idempotency_take_over(address: &str, key: &str, old_msgid: &str, msgid: &str, now_ms: i64) -> crate::store::Result<bool>;
        /// Record the answer of the attempt `msgid` holding `key`.
        fn idempotency_answer(address: &str, key: &str, msgid: &str, status: u16, body: &[u8]) -> crate::store::Result<()>;
        /// Free `key` held by the unanswered attempt `msgid`.
        fn idempotency_release(address: &str, key: &str, msgid: &str) -> crate::store::Result<()>;
        // log
        /// Append one event; returns its row id.
        ///
        /// The id is the chain tip's plus one, given explicitly, so the hash can
        /// cover it. Another process (`pecd queue cancel`) may have appended since
        /// the writer last looked: then that id is taken, the insert fails on the
        /// key alone, and the tip is read again.
        fn log_append(e: &crate::store::log::Event) -> crate::store::Result<i64>;
        /// Call `f` with each row whose id is in `from..=to`, in id order, and its
        /// stored chain hash (None when missing or not 32 bytes); `f` returns
        /// false to stop. One row in memory at a time, so a long log verifies in
        /// constant memory.
        fn log_for_each_chained(from: i64, to: i64, f: &mut dyn FnMut(&crate::store::log::Event, Option<[u8; 32]>) -> bool) -> crate::store::Result<()>;
        /// The nearest row before `id` and its chain hash, if any.
        fn log_chain_before(id: i64) -> crate::store::Result<Option<(i64, Option<Vec<u8>>)>>;
        /// The smallest and largest row id, if the log has rows.
        fn log_id_bounds() -> crate::store::Result<Option<(i64, i64)>>;
        /// The last row id whose time is before `ms`, if any (`pecd log verify
        /// --to`: a scan, fine for the CLI, never in the daemon).
        fn log_last_id_before(ms: i64) -> crate::store::Result<Option<i64>>;
        /// The first row id whose time is at or after `ms`, if any.
        fn log_first_id_from(ms: i64) -> crate::store::Result<Option<i64>>;
        /// Events matching `q`, oldest first.
        fn log_query(q: &crate::store::log::Query) -> crate::store::Result<Vec<crate::store::log::Event>>;
        /// Delete events older than the legal retention (30 months). Returns rows removed.
        fn log_purge_expired(now_ms: i64) -> crate::store::Result<usize>;
        /// The ordinary recipients of message `identificativo` not delivered for
        /// good: `(recipient, when in Unix ms, the error)`, from the
        /// `mancata-consegna-esterno` rows (the sent status's `errore`).
        fn esterno_failures(identificativo: &str) -> crate::store::Result<Vec<(String, i64, String)>>;
        /// Per identificativo, the times of the `deposito` events whose detail starts
        /// with `what` (e.g. `accettazione`): how `pecd bench` times each message.
        fn deposit_times(what: &str) -> crate::store::Result<Vec<(String, i64)>>;
        /// How many `deposito` events have a detail starting with `what`.
        fn count_deposits(what: &str) -> crate::store::Result<i64>;
        // seal
        /// Every seal, in row order.
        fn seal_all() -> crate::store::Result<Vec<crate::store::seal::Seal>>;
        /// The seal covering the newest rows, if any.
        fn seal_last() -> crate::store::Result<Option<crate::store::seal::Seal>>;
        /// The newest date sealed, if any.
        fn seal_newest_date() -> crate::store::Result<Option<String>>;
        /// Store a new seal; false (and nothing changed) when `date` has one
        /// already: a restart that seals again never makes a second.
        fn seal_insert(s: &crate::store::seal::Seal) -> crate::store::Result<bool>;
        /// Attach the TSA's reply to the seal of `date` (once: a seal that
        /// has one keeps it).
        fn seal_set_tsr(date: &str, tsr: &[u8], at: i64) -> crate::store::Result<bool>;
        /// The smallest time among rows after `after_id` (the first unsealed
        /// day), if there are any. Scans by row id from the last seal on only.
        fn log_first_unsealed_ts(after_id: i64) -> crate::store::Result<Option<i64>>;
        /// The rows after `after_id` up to the last one timed before `before_ms`,
        /// chained from `prev_hash`; None when there are none.
        fn seal_range(after_id: i64, before_ms: i64, prev_hash: &[u8]) -> crate::store::Result<Option<crate::store::seal::Range>>;
        /// How many rows have an id in `from..=to`.
        fn log_count_rows(from: i64, to: i64) -> crate::store::Result<i64>;
        /// The finished days (ended at `finished_by_ms` or before) with rows in
        /// no seal: after the last seal (not sealed yet) or between two seals (a
        /// seal deleted). `seals` in row order, as [`Db::seal_all`] gives them. A row
        /// committed after the seal of the day it is timed in belongs to the next
        /// seal, as the sealer does it, so it is counted in the day after.
        fn unsealed_days(seals: &[crate::store::seal::Seal], finished_by_ms: i64) -> crate::store::Result<Vec<crate::store::seal::Unsealed>>;
        /// Record `error` as why each of `dates` is not sealed (or stamped) yet.
        fn seal_set_error(dates: &[String], error: &str, at: i64) -> crate::store::Result<()>;
        /// Forget the recorded errors of every day not in `pending`.
        fn seal_clear_errors_except(pending: &[String]) -> crate::store::Result<()>;
        /// The recorded errors by date: (error, when, unix ms). Empty on a
        /// database the daemon has not migrated yet (`pecd log verify` does not
        /// migrate).
        fn seal_errors() -> crate::store::Result<std::collections::HashMap<String, (String, i64)>>;
        // quarantine
        /// Record a quarantined message; gives its id.
        fn quarantine_insert(q: &crate::store::quarantine::Quarantined) -> crate::store::Result<i64>;
        /// Every quarantined message, oldest first.
        fn quarantine_list() -> crate::store::Result<Vec<crate::store::quarantine::Quarantined>>;
        /// One quarantined message by row id or identificativo.
        fn quarantine_get(key: &str) -> crate::store::Result<Option<crate::store::quarantine::Quarantined>>;
        /// Remove the rows past the legal retention (30 months, as for the
        /// log); gives their file names, for the caller to delete after the
        /// commit.
        fn quarantine_purge_expired(now_ms: i64) -> crate::store::Result<Vec<String>>;
        }
    };
}

/// Declares the trait from the list.
macro_rules! declare_tx {
    (() $( $(#[$m:meta])* fn $name:ident( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {
        /// The database inside one store call (see the module doc).
        pub(in crate::store) trait Tx {
            $( $(#[$m])* fn $name(&self, $($arg: $ty),*) -> $ret; )*
        }
    };
}

/// Implements [`Tx`] for a backend's type by calling its inherent methods.
macro_rules! delegate_tx {
    (($t:ty) $( $(#[$m:meta])* fn $name:ident( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {
        impl crate::store::backend::Tx for $t {
            $( fn $name(&self, $($arg: $ty),*) -> $ret { Self::$name(self, $($arg),*) } )*
        }
    };
}

with_tx_ops!(declare_tx!());

/// Implements [`Tx`] for a backend's type `$t` (see [`delegate_tx`]).
macro_rules! delegate_tx_for {
    ($t:ty) => {
        with_tx_ops!(delegate_tx!($t));
    };
}
