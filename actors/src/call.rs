//! Request/reply between actors: a typed [`Peer`] found by its registered name
//! each time it is asked, and a deadline on every request.

use crate::names::{Child, Names};
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};
use std::marker::PhantomData;
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

/// A sibling actor that takes messages `M`. Never holds its `ActorRef`: a
/// restarted sibling is a new actor, so each request looks it up by name. The
/// name, the label and the message type come together, so they cannot disagree.
pub struct Peer<M> {
    name: String,
    child: Child,
    messages: PhantomData<fn(M)>,
}

impl<M> Clone for Peer<M> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            child: self.child,
            messages: PhantomData,
        }
    }
}

impl<M: Message> Peer<M> {
    /// Each actor's module offers its own (`cache::peer(&names)`), so that the
    /// child and the message type match.
    pub fn new(names: &Names, child: Child) -> Self {
        Self {
            name: names.of(child),
            child,
            messages: PhantomData,
        }
    }

    /// The actor, if it is running now.
    pub fn get(&self) -> Option<ActorRef<M>> {
        ActorRef::where_is(self.name.clone())
    }

    /// Sends the message that `build` makes around a reply port, and waits up
    /// to `timeout` for the reply.
    pub async fn ask<T>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> M,
        timeout: Duration,
    ) -> Result<T, CallError>
    where
        T: Send + 'static,
    {
        let actor = self.get().ok_or(CallError::NotRunning(self.child))?;
        match actor.call(build, Some(timeout)).await {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(CallError::Timeout(self.child, timeout)),
            Ok(CallResult::SenderError) => Err(CallError::Dropped(self.child)),
            Err(_) => Err(CallError::NotRunning(self.child)),
        }
    }
}
