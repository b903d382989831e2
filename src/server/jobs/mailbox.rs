//! A finished message (receipt, notice, anomaly) into its addressee's mailbox.

use std::sync::Arc;

use crate::store::queue::Job;

use super::{blob_of, commit, job_data, work, Ctx, Fail};

/// Deposit the job's message.
pub(super) async fn run(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let raw = blob_of(ctx, job)?;
    let (tipo, msgid) = job_data(job);
    let batch = crate::flow::deliver::deposit(
        &ctx.us(),
        ctx.unix_ms(),
        &work(job, &raw)?,
        job.identificativo.as_deref(),
        tipo.as_deref(),
        msgid,
    );
    commit(ctx, job.claim(), batch).await?;
    Ok(())
}
