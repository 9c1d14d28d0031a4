//! Request/reply between actors, with the look-up by name and a deadline.

use crate::names::Child;
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};
use std::time::Duration;

/// Why a request to another actor got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("the {} actor is not running", .0.as_str())]
    NotRunning(Child),
    #[error("the {} actor did not answer within {:?}", .0.as_str(), .1)]
    Timeout(Child, Duration),
    #[error("the {} actor stopped before it answered", .0.as_str())]
    Dropped(Child),
}

/// Sends `to` the message that `build` makes around a reply port, and waits up
/// to `timeout` for the reply. `to` is the result of a look-up by name (see
/// [`crate::names::Names`]), so that a restarted actor is the one asked.
pub async fn ask<M, T>(
    to: Option<ActorRef<M>>,
    child: Child,
    build: impl FnOnce(RpcReplyPort<T>) -> M,
    timeout: Duration,
) -> Result<T, CallError>
where
    M: Message,
    T: Send + 'static,
{
    let actor = to.ok_or(CallError::NotRunning(child))?;
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(reply)) => Ok(reply),
        Ok(CallResult::Timeout) => Err(CallError::Timeout(child, timeout)),
        Ok(CallResult::SenderError) => Err(CallError::Dropped(child)),
        Err(_) => Err(CallError::NotRunning(child)),
    }
}
