//! A 12 h or 24 h deadline that is due: the message's facts, then
//! `flow::timers::fire`. The batch holds only while the deadline is armed,
//! so a deadline fires once however many times it is looked at.

use std::sync::Arc;

use crate::flow::batch::{DueTimer, Fence};
use crate::pec::daticert::{Certified, Daticert};

use super::{commit, Ctx, Fail};

/// Fire `t` (its notice to the sender, and what the 24 h one closes) under
/// `claim`, the claim this node holds on it.
pub async fn fire(ctx: &Arc<Ctx>, t: &DueTimer, claim: Fence) -> Result<(), Fail> {
    let accepted = ctx.store.accepted(&t.identificativo).await?;
    let certified = match accepted {
        Some(m) => match Daticert::parse(m.daticert.as_bytes()) {
            Ok(d) => Some(Certified::from(&d)),
            Err(e) => {
                tracing::error!(error = ?e, id = %t.identificativo, "timer for a message whose daticert does not parse; disarming");
                None
            }
        },
        None => {
            tracing::error!(id = %t.identificativo, "timer for an unknown message; disarming");
            None
        }
    };
    let batch = crate::flow::timers::fire(&ctx.us(), &ctx.now(), t, certified.as_ref());
    commit(ctx, Some(claim), batch).await?;
    Ok(())
}
