use cache_layer::KeyArg;

#[derive(KeyArg)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
