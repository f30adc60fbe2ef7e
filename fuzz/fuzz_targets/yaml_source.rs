//! The YAML source (standalone mode's files): any text is read into objects and errors,
//! translated, and what translation emits is compiled by the data plane; nothing panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    gatehouse_fuzz::translate_and_compile(text);
});
