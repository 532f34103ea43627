use serde::{Deserialize, Serialize};
use theta::persistence::Restore;
use theta::prelude::*;

struct Journal {
    lines: Vec<String>,
    label: String,
}

#[derive(Serialize, Deserialize)]
struct JournalSnapshot {
    lines: Vec<String>,
}

impl Restore for Journal {
    async fn restore(_ctx: Context<Self>, snapshot: &JournalSnapshot, label: &String) -> Self {
        Journal {
            lines: snapshot.lines.clone(),
            label: label.clone(),
        }
    }
}

// No `From<&Journal> for JournalSnapshot`.
#[actor(
    "12345678-1234-5678-9abc-123456789abc",
    snapshot = JournalSnapshot,
    runtime_args = String
)]
impl Actor for Journal {}

fn main() {
    let _ = |j: Journal| (j.lines, j.label);
}
