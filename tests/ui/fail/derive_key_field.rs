use cache_layer::KeyArg;

struct Opaque;

#[derive(KeyArg)]
struct Query {
    id: u64,
    filter: Opaque,
}

#[derive(KeyArg)]
enum Search {
    All,
    By(Opaque),
}

fn main() {}
