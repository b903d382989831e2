//! `daticert.xml` read and written back: parsing arbitrary bytes never
//! panics, and whatever parses survives `to_xml` then `parse` unchanged
//! (a receipt quotes the busta's daticert, so a lossy round trip would
//! certify something other than what the peer wrote).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pecd::pec::daticert::Daticert;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Daticert::parse(data) {
        let xml = d.to_xml();
        match Daticert::parse(xml.as_bytes()) {
            Ok(again) => assert_eq!(d, again, "round trip changed the model\n{xml}"),
            Err(e) => panic!("our own output does not parse: {e}\n{xml}"),
        }
        // And the writer is a fixed point from then on.
        assert_eq!(
            xml,
            Daticert::parse(xml.as_bytes())
                .map(|d| d.to_xml())
                .unwrap_or_default()
        );
    }
});
