//! The supervisor: starts the four actors, restarts one that fails, and stops
//! them in order.
//!
//! - Start order: persistence, cache, http, ingest (each needs the ones before).
//! - A child that fails or stops on its own is started again with the same
//!   arguments; the restart and its cause are logged at ERROR. A restarted cache
//!   rebuilds itself from Postgres. Siblings find the new actor by name.
//!   Each restart is counted (`products_actor_restarts_total`, by actor).
//! - Restarts are bounded: more than `max_restarts` within `within` and the
//!   supervisor stops, so that the binary exits non-zero and an orchestrator
//!   can act.
//! - `Shutdown` stops the children in reverse order: ingest first, so that its
//!   batch in flight is stored and acked while persistence and cache still run.
//!   The whole stop fits in `shutdown_budget`: ingest gets what is left of it
//!   after http's grace; a child that does not stop in its share is killed (a
//!   batch it had not acked is redelivered; storing is idempotent).

use crate::cache::{Cache, CacheArgs};
use crate::http::{Http, HttpArgs};
use crate::ingest::{Ingest, IngestArgs};
use crate::metrics::Metrics;
use crate::names::{Child, Names};
use crate::persistence::{Persistence, PersistenceArgs};
use crate::timeouts::HTTP_GRACE;
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

pub type SupervisorRef = ActorRef<SupervisorMsg>;

/// What shutdown keeps for the children after ingest: http's grace, and a
/// moment for the cache and persistence.
const AFTER_INGEST: Duration = HTTP_GRACE.saturating_add(Duration::from_secs(1));
/// The pause before trying again to start a child whose restart failed.
const RESPAWN_DELAY: Duration = Duration::from_secs(1);

pub enum SupervisorMsg {
    /// From the binary (or a test): stop every child in order, then the
    /// supervisor. Replies once the children have stopped.
    Shutdown { reply: RpcReplyPort<()> },
    /// From itself: try again to start a child whose restart failed.
    Restart { child: Child },
}

/// At most `max_restarts` restarts within `within`.
#[derive(Clone, Copy, Debug)]
pub struct RestartBudget {
    pub max_restarts: usize,
    pub within: Duration,
}

impl Default for RestartBudget {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            within: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
pub struct SupervisorArgs {
    pub names: Names,
    pub persistence: PersistenceArgs,
    pub cache: CacheArgs,
    pub http: HttpArgs,
    pub ingest: IngestArgs,
    pub restart_budget: RestartBudget,
    /// How long a whole graceful stop may take.
    pub shutdown_budget: Duration,
}

pub struct Supervisor;

pub struct SupervisorState {
    args: SupervisorArgs,
    shutting_down: bool,
    restarts: VecDeque<Instant>,
    metrics: Metrics,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: SupervisorRef,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut started: Vec<ActorCell> = Vec::new();
        for child in Child::ALL {
            match spawn_child(&args, child, myself.get_cell()).await {
                Ok(cell) => started.push(cell),
                Err(e) => {
                    for cell in started.iter().rev() {
                        cell.stop(None);
                    }
                    return Err(format!("cannot start the {} actor: {e}", child.as_str()).into());
                }
            }
        }
        Ok(SupervisorState {
            metrics: Metrics::new(&args.names),
            args,
            shutting_down: false,
            restarts: VecDeque::new(),
        })
    }

    async fn handle(
        &self,
        myself: SupervisorRef,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Shutdown { reply } => {
                state.shut_down().await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
            SupervisorMsg::Restart { child } => state.restart(&myself, child).await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: SupervisorRef,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, cause) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                reason.unwrap_or_else(|| "stopped without a reason".into()),
            ),
            _ => return Ok(()),
        };
        if state.shutting_down {
            return Ok(());
        }
        let Some(child) = state.child_named(&cell) else {
            return Ok(());
        };
        error!(actor = child.as_str(), %cause, "actor stopped; restarting it");
        state.metrics.actor_restarted(child);
        state.restart(&myself, child).await;
        Ok(())
    }
}

impl SupervisorState {
    fn child_named(&self, cell: &ActorCell) -> Option<Child> {
        let name = cell.get_name()?;
        Child::ALL
            .into_iter()
            .find(|child| self.args.names.of(*child) == name)
    }

    /// Starts `child` again, unless the restart budget is spent.
    async fn restart(&mut self, myself: &SupervisorRef, child: Child) {
        let now = Instant::now();
        let budget = self.args.restart_budget;
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > budget.within)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() > budget.max_restarts {
            error!(
                max_restarts = budget.max_restarts,
                within = ?budget.within,
                "too many restarts; stopping so that the process exits"
            );
            self.shut_down().await;
            myself.stop(Some("restart budget exhausted".into()));
            return;
        }
        match spawn_child(&self.args, child, myself.get_cell()).await {
            Ok(_) => info!(actor = child.as_str(), "actor restarted"),
            Err(e) => {
                warn!(actor = child.as_str(), error = %e, retry_in = ?RESPAWN_DELAY, "actor restart failed");
                myself.send_after(RESPAWN_DELAY, move || SupervisorMsg::Restart { child });
            }
        }
    }

    /// Stops the children in reverse start order, waiting for each, all within
    /// the shutdown budget.
    async fn shut_down(&mut self) {
        self.shutting_down = true;
        let deadline = Instant::now() + self.args.shutdown_budget;
        for child in Child::ALL.into_iter().rev() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = match child {
                Child::Ingest => left.saturating_sub(AFTER_INGEST),
                _ => left,
            }
            .max(Duration::from_millis(100));
            if let Some(cell) = ractor::registry::where_is(self.args.names.of(child))
                && let Err(e) = cell.stop_and_wait(None, Some(share)).await
            {
                warn!(actor = child.as_str(), error = %e, waited = ?share, "actor did not stop in time; killing it");
                cell.kill();
            }
        }
    }
}

async fn spawn_child(
    args: &SupervisorArgs,
    child: Child,
    supervisor: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let name = Some(args.names.of(child));
    Ok(match child {
        Child::Persistence => {
            Actor::spawn_linked(name, Persistence, args.persistence.clone(), supervisor)
                .await?
                .0
                .get_cell()
        }
        Child::Cache => Actor::spawn_linked(name, Cache, args.cache.clone(), supervisor)
            .await?
            .0
            .get_cell(),
        Child::Http => Actor::spawn_linked(name, Http, args.http.clone(), supervisor)
            .await?
            .0
            .get_cell(),
        Child::Ingest => Actor::spawn_linked(name, Ingest, args.ingest.clone(), supervisor)
            .await?
            .0
            .get_cell(),
    })
}
