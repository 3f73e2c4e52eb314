use cache_layer::invalidates;

#[invalidates("user:<user_id>")]
async fn rename(id: u64, name: &str) -> Result<(), ()> {
    let _ = (id, name);
    Ok(())
}

fn main() {}
