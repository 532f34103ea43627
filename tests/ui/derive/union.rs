use theta::prelude::*;

#[derive(Clone, Copy, ActorArgs)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
