//! The store directory is 0700 and its files 0600 whatever the umask. A test
//! binary of its own: it sets the process's umask to 000.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use rustix::fs::Mode;
use theta::ActorId;
use theta::persistence::PersistentStorage;
use theta::persistence::envelope::Seal;
use theta_persistence_sled::SledStorage;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every entry under `dir`, with its mode.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name.clone(), mode(&path)));
        if path.is_dir() {
            for (inner, m) in modes(&path) {
                out.push((format!("{name}/{inner}"), m));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_directory_is_0700_and_every_file_0600_under_umask_000() {
    let previous = rustix::process::umask(Mode::empty());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let id = ActorId::new_v4();
    let big = Seal::new(ActorId::new_v4())
        .actor_id(id)
        .sequence(1)
        .seal(&vec![1u8; 1 << 20]);
    {
        let storage = SledStorage::open(&path).unwrap();
        let write = storage.try_write(id, big.clone());
        tokio::time::timeout(Duration::from_secs(10), write)
            .await
            .unwrap()
            .unwrap();
        // A blob file written while the store runs is narrowed as it is synced.
        for (name, m) in modes(&path) {
            if name.starts_with("blobs/") {
                assert_eq!(m, 0o600, "{name} while open");
            }
        }
        storage.close().await.unwrap();
    }
    // sled wrote its snapshot file at close; the next open narrows it.
    let storage = SledStorage::open(&path).unwrap();
    rustix::process::umask(previous);
    assert_eq!(mode(&path), 0o700);
    let found = modes(&path);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["ACKED", "FORMAT", "blobs", "conf", "db"] {
        assert!(names.contains(&expected), "{expected} missing in {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("snap.")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("blobs/")), "{names:?}");
    for (name, m) in &found {
        let want = if name == "blobs" { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{name}: {m:o}");
    }
    drop(storage);
}
