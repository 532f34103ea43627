use serde::{Deserialize, Serialize};
use theta::persistence::SharedStorage;
use theta::prelude::*;

struct Journal {
    lines: Vec<String>,
    storage: SharedStorage,
}

#[derive(Serialize, Deserialize)]
struct JournalSnapshot {
    lines: Vec<String>,
}

impl From<&Journal> for JournalSnapshot {
    fn from(journal: &Journal) -> Self {
        Self {
            lines: journal.lines.clone(),
        }
    }
}

struct Write(String);

// `runtime_args` without `impl Restore for Journal`.
#[actor(
    "12345678-1234-5678-9abc-123456789abc",
    snapshot = JournalSnapshot,
    runtime_args = SharedStorage
)]
impl Actor for Journal {
    const _: () = {
        async |Write(line): Write| -> bool {
            self.lines.push(line);
            ctx.save_snapshot(&self.storage, self).await.is_ok()
        };
    };
}

fn main() {}
