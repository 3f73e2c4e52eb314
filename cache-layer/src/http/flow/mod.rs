//! How a request is answered: the decision and the forwarding code, composing the RFC rules
//! (`rules/`) and the stored-response model (`stored/`).
//!
//! A GET or HEAD is looked up in memory (`lookup`) and `decide` settles how it is answered:
//! from the stored response (`respond`), stale while one background request refreshes it
//! (`refresh`), or as a miss. A miss looks in the shared tier when there is one, then waits
//! on a concurrent load of its key or leads one (`fetch`), and asks the inner service
//! (`forward`, with the miss's `plan`; within the layer's timeouts, `timeout`): a `304` updates the stored response (`revalidate`), a
//! full answer is stored through the storage gate and answered (`answer`, writing with
//! `store`). An unsafe request is forwarded and then invalidates what it names (`invalidate`).

pub(crate) mod answer;
pub(crate) mod decide;
pub(crate) mod fetch;
pub(crate) mod forward;
pub(crate) mod invalidate;
pub(crate) mod lookup;
pub(crate) mod plan;
pub(crate) mod refresh;
pub(crate) mod respond;
pub(crate) mod revalidate;
pub(crate) mod store;
pub(crate) mod timeout;
