//! A batch put's data as a hostile client may send it (`PutWhat::Batch`,
//! protocol 10), cut anywhere into the helper's data chunks, written by
//! the helper's own code into a scratch directory. Properties: no panic,
//! no unbounded allocation, and nothing made outside the directory: its
//! sibling stays empty, and the scratch's parent holds only the two.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, data)) = data.split_first() else { return };
    let step = 1 + (ctl as usize) * 64;
    let base = std::env::temp_dir().join(format!("rexec-fuzz-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (dest, beside) = (base.join("dest"), base.join("beside"));
    std::fs::create_dir_all(&dest).expect("scratch");
    std::fs::create_dir_all(&beside).expect("scratch");
    std::os::unix::fs::symlink(&beside, dest.join("out")).expect("scratch link");
    rexec_server::decode_untrusted_batch(&dest, step, data);
    assert_eq!(std::fs::read_dir(&beside).expect("beside").count(), 0, "wrote through the link");
    assert_eq!(std::fs::read_dir(&base).expect("base").count(), 2, "wrote beside dest");
    let _ = std::fs::remove_dir_all(&base);
});
