//! Task lifecycle events of this runtime's namespace, as a channel of typed values.
//!
//! Owns the `Events.Subscribe` stream (filtered to the namespace and `/tasks/` topics), the
//! decoding of its `Any` payloads (containerd sends type URLs *without* the leading `/`, so
//! `Any::to_msg` would fail: payloads are decoded directly by topic), and resubscription with
//! backoff when the stream breaks (announced as [`TaskEvent::Resubscribed`]: events in the gap
//! are lost, the consumer must re-list).
//!
//! Must never: block containerd (the forwarding task only awaits the consumer's channel), or
//! invent events.

use std::time::{Duration, SystemTime};

use containerd_client::events::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOom, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::{PublishRequest, SubscribeRequest};
use containerd_client::tonic::Streaming;
use containerd_client::types::Envelope;
use prost::Message;
use tokio::sync::mpsc;

use crate::{to_system_time, Runtime, RuntimeError};

/// A task event. `id` is the container id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// Task created (not started).
    Created {
        /// Container id.
        id: String,
        /// Init pid.
        pid: u32,
    },
    /// Task started.
    Started {
        /// Container id.
        id: String,
        /// Init pid.
        pid: u32,
    },
    /// A process exited: the init process (`exec_id` None) or an exec.
    Exited {
        /// Container id.
        id: String,
        /// Exec id for exec'd processes.
        exec_id: Option<String>,
        /// Host pid.
        pid: u32,
        /// Exit status (128 + signal when killed).
        exit_status: u32,
        /// When.
        exited_at: Option<SystemTime>,
    },
    /// The kernel OOM killer hit the container's cgroup.
    Oom {
        /// Container id.
        id: String,
    },
    /// Task (or exec process) deleted.
    Deleted {
        /// Container id.
        id: String,
        /// Host pid.
        pid: u32,
        /// Exit status.
        exit_status: u32,
        /// When it exited.
        exited_at: Option<SystemTime>,
    },
    /// An exec process was added.
    ExecAdded {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: String,
    },
    /// An exec process started.
    ExecStarted {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: String,
        /// Host pid.
        pid: u32,
    },
    /// Task paused.
    Paused {
        /// Container id.
        id: String,
    },
    /// Task resumed.
    Resumed {
        /// Container id.
        id: String,
    },
    /// The event stream broke and was re-established: events may have been missed, so the
    /// consumer should re-list containers and tasks.
    Resubscribed,
}

/// Decodes one envelope; None for topics and payloads we do not model.
pub(crate) fn decode(env: &Envelope) -> Option<TaskEvent> {
    let any = env.event.as_ref()?;
    let v = any.value.as_slice();
    Some(match env.topic.as_str() {
        "/tasks/create" => {
            let e = TaskCreate::decode(v).ok()?;
            TaskEvent::Created {
                id: e.container_id,
                pid: e.pid,
            }
        }
        "/tasks/start" => {
            let e = TaskStart::decode(v).ok()?;
            TaskEvent::Started {
                id: e.container_id,
                pid: e.pid,
            }
        }
        "/tasks/exit" => {
            let e = TaskExit::decode(v).ok()?;
            TaskEvent::Exited {
                exec_id: (!e.id.is_empty() && e.id != e.container_id).then_some(e.id),
                id: e.container_id,
                pid: e.pid,
                exit_status: e.exit_status,
                exited_at: to_system_time(e.exited_at.as_ref()),
            }
        }
        "/tasks/oom" => TaskEvent::Oom {
            id: TaskOom::decode(v).ok()?.container_id,
        },
        "/tasks/delete" => {
            let e = TaskDelete::decode(v).ok()?;
            TaskEvent::Deleted {
                id: e.container_id,
                pid: e.pid,
                exit_status: e.exit_status,
                exited_at: to_system_time(e.exited_at.as_ref()),
            }
        }
        "/tasks/exec-added" => {
            let e = TaskExecAdded::decode(v).ok()?;
            TaskEvent::ExecAdded {
                id: e.container_id,
                exec_id: e.exec_id,
            }
        }
        "/tasks/exec-started" => {
            let e = TaskExecStarted::decode(v).ok()?;
            TaskEvent::ExecStarted {
                id: e.container_id,
                exec_id: e.exec_id,
                pid: e.pid,
            }
        }
        "/tasks/paused" => TaskEvent::Paused {
            id: TaskPaused::decode(v).ok()?.container_id,
        },
        "/tasks/resumed" => TaskEvent::Resumed {
            id: TaskResumed::decode(v).ok()?.container_id,
        },
        _ => return None,
    })
}

impl Runtime {
    /// Subscribes and returns once the stream is live.
    ///
    /// containerd (grpc-go) sends the response headers of `Events.Subscribe` only with the
    /// first event, so awaiting the call alone would block until something happens. We
    /// therefore publish a private sync event (topic `sync_topic`, matched by a second filter)
    /// every 100 ms until the call returns: then the subscription is registered and no later
    /// task event can be missed. Sync envelopes are dropped by the reader.
    async fn subscribe(&self, sync_topic: &str) -> Result<Streaming<Envelope>, RuntimeError> {
        let filters = vec![
            format!("namespace==\"{}\",topic~=\"^/tasks/\"", self.namespace),
            format!("namespace==\"{}\",topic==\"{sync_topic}\"", self.namespace),
        ];
        let mut client = EventsClient::new(self.channel.clone());
        let call = client.subscribe(SubscribeRequest { filters });
        tokio::pin!(call);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = &mut call => {
                    return Ok(r.map_err(|s| RuntimeError::grpc("Events.Subscribe", "events", s))?.into_inner());
                }
                _ = tick.tick() => {
                    let publish = EventsClient::new(self.channel.clone())
                        .publish(self.req(PublishRequest {
                            topic: sync_topic.to_string(),
                            event: Some(prost_types::Any { type_url: "dray.runtime.v1.Sync".into(), value: vec![] }),
                        }))
                        .await;
                    if let Err(s) = publish {
                        tracing::debug!(error = %s.message(), "publishing the events sync marker failed");
                    }
                }
                _ = &mut deadline => {
                    return Err(RuntimeError::Timeout("Events.Subscribe did not become live within 10s".into()));
                }
            }
        }
    }

    /// Subscribes to task events of this namespace. The subscription is live when this returns;
    /// it ends when the receiver is dropped. If containerd's stream breaks it is re-established
    /// with backoff and [`TaskEvent::Resubscribed`] is sent.
    pub async fn events(&self) -> Result<mpsc::Receiver<TaskEvent>, RuntimeError> {
        let sync_topic = format!("/dray/sync/{}", crate::unique("events"));
        let mut stream = self.subscribe(&sync_topic).await?;
        let (tx, rx) = mpsc::channel(1024);
        let rt = self.clone();
        tokio::spawn(async move {
            loop {
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        msg = stream.message() => match msg {
                            Ok(Some(env)) => {
                                if env.namespace != rt.namespace || env.topic == sync_topic {
                                    continue;
                                }
                                if let Some(ev) = decode(&env) {
                                    if tx.send(ev).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Ok(None) => {
                                tracing::warn!("containerd event stream ended");
                                break;
                            }
                            Err(s) => {
                                tracing::warn!(code = ?s.code(), error = %s.message(), "containerd event stream failed");
                                break;
                            }
                        }
                    }
                }
                let mut delay = Duration::from_millis(100);
                loop {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    match rt.subscribe(&sync_topic).await {
                        Ok(s) => {
                            stream = s;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "resubscribing to containerd events");
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                if tx.send(TaskEvent::Resubscribed).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
