//! Our own DER readers of a PKCS#7 SignedData (`smime::der`: the signer
//! info's digest, signingTime and messageDigest, and the detached
//! single-signer splitter) on arbitrary bytes: no panic, and every slice
//! the splitter returns lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pecd::fuzzing::{der_signed_parts, der_signer_info};

fuzz_target!(|data: &[u8]| {
    let _ = der_signer_info(data);
    if let Some((_, issuer, serial, attrs, sig)) = der_signed_parts(data) {
        assert!(issuer + serial + attrs + sig <= data.len());
    }
});
