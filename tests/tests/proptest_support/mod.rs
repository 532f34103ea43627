//! The proptest configuration of the property tests.

/// A proptest configuration with `default` cases (`PROPTEST_CASES` overrides) whose
/// failing cases are saved beside `source_file` (pass `file!()`) and replayed
/// first from then on.
pub fn proptest_config(default: u32, source_file: &'static str) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence};
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    Config {
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::with_cases(cases)
    }
}
