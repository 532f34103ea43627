//! Compile tests of the macros: `ui/pass/*.rs` must build (and run), every other
//! `ui/<topic>/*.rs` must fail with exactly its `.stderr`. Regenerate the
//! expected output with `TRYBUILD=overwrite` (never edit `.stderr` by hand).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    for topic in ["attr", "handler", "snapshot", "derive", "messaging"] {
        t.compile_fail(format!("ui/{topic}/*.rs"));
    }
}
