use cache_layer::invalidates;

#[invalidates]
async fn rename(id: u64) -> Result<(), ()> {
    let _ = id;
    Ok(())
}

fn main() {}
