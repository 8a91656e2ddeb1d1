//! The browser's DevTools pipe, and the connections that share it.
//!
//! Chromium runs with `--remote-debugging-pipe`: it reads commands from its
//! fd 3 and writes answers and events to its fd 4, each message a JSON text
//! ended by a NUL byte. It opens no port, so no other process on the machine
//! can reach it; the server holds the other ends of both pipes.
//!
//! [`Devtools`] lets any number of connections share that pipe. Each
//! connection gets a browser-target session of its own
//! (`Target.attachToBrowserTarget`), which gives it what a client of
//! Chromium's WebSocket endpoint gets: its own targets, auto-attach and
//! discovery settings, and browser contexts disposed when it leaves. On the
//! way in, a command without a `sessionId` is sent to the connection's
//! browser session and every command is renumbered (ids of different
//! connections would collide); on the way out, answers find their
//! connection by that number and get their own id back, and events find it
//! by CDP session: its browser session (whose id is removed: the client
//! never saw it) and every session attached under it, learnt from
//! `Target.attachedToTarget`. A command for a session of another connection
//! is refused, as Chromium refuses a session it does not know.
//!
//! Backpressure: a connection's commands wait for room in the pipe. Messages
//! for a connection queue without blocking the others, up to
//! [`QUEUE_BUDGET_BYTES`]; a connection that falls further behind is closed
//! (a message always fits an empty queue, so a large screenshot passes).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_channel::mpsc;
use futures_util::{Sink, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::PollSender;

use crate::scope::{AnswerHook, CommandVerdict, EventVerdict, Scope, BROWSER_TARGET};

/// How far (bytes of messages) a connection may fall behind before it is closed.
pub const QUEUE_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// Largest message read from the browser; a longer one is skipped (logged).
const MAX_MESSAGE_BYTES: usize = 1024 * 1024 * 1024;
/// How long a new connection waits for the browser to attach it.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Commands waiting for the pipe (of every connection).
const COMMAND_QUEUE: usize = 64;

/// The shared DevTools pipe of one browser. Cheap to clone. A scoped one
/// ([`Devtools::scoped`]) makes connections that see one context session
/// only (see the crate's `scope` module).
#[derive(Clone)]
pub struct Devtools {
    hub: Arc<Hub>,
    scope: Option<Arc<Scope>>,
}

impl std::fmt::Debug for Devtools {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.hub.routes();
        formatter
            .debug_struct("Devtools")
            .field("connections", &routes.clients.len())
            .field("closed", &routes.closed)
            .finish()
    }
}

/// One connection to a browser, used like a WebSocket to its DevTools
/// endpoint: a [`Sink`] of CDP commands and a [`Stream`] of answers and
/// events. Dropping it detaches its sessions. The
/// stream ends when the browser goes, or when the connection fell too far
/// behind.
pub struct DevtoolsConnection {
    hub: Arc<Hub>,
    client: u64,
    /// Its browser session.
    session: String,
    /// Commands go from the caller's task straight into the pipe's queue.
    to_browser: PollSender<Vec<u8>>,
    messages: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
    /// The context session it is kept inside, if any.
    scope: Option<Arc<Scope>>,
}

/// The browser's end of the pipe has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the browser's DevTools pipe is closed")]
pub struct PipeClosed;

impl Stream for DevtoolsConnection {
    type Item = Result<Message, PipeClosed>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.messages.poll_next_unpin(context) {
            Poll::Ready(Some(message)) => {
                self.queued.fetch_sub(message.len(), Ordering::Relaxed);
                if let (Message::Close(_), Some(scope)) = (&message, &self.scope) {
                    // A scoped client's `Browser.close`, answered: its session ends.
                    scope.closed_by_client();
                }
                Poll::Ready(Some(Ok(message)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Commands are rewritten in the caller's task as they are sent, so that a
/// command crosses one task (the pipe's writer) on its way to the browser.
impl Sink<Message> for DevtoolsConnection {
    type Error = PipeClosed;

    fn poll_ready(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Result<(), PipeClosed>> {
        self.to_browser.poll_reserve(context).map_err(|_| PipeClosed)
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), PipeClosed> {
        let this = &mut *self;
        let text = match &message {
            Message::Text(text) => Ok(text.as_str()),
            Message::Binary(bytes) => {
                std::str::from_utf8(bytes).map_err(|_| Some(refusal(None, -32700, "Message is not UTF-8 text", None)))
            }
            // Control frames are the WebSocket layer's business.
            _ => Err(None),
        };
        match text.and_then(|text| this.hub.command(this.client, &this.session, text)) {
            Ok(bytes) => this.to_browser.send_item(bytes).map_err(|_| PipeClosed),
            Err(refused) => {
                this.to_browser.abort_send();
                match refused {
                    Some(refused) => this.hub.routes().deliver(this.client, refused),
                    None if !this.hub.routes().clients.contains_key(&this.client) => return Err(PipeClosed),
                    None => {}
                }
                Ok(())
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<Result<(), PipeClosed>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<Result<(), PipeClosed>> {
        self.to_browser.close();
        Poll::Ready(Ok(()))
    }
}

/// Leaving detaches the connection's browser session, which detaches every
/// session under it and disposes the contexts it asked to.
impl Drop for DevtoolsConnection {
    fn drop(&mut self) {
        self.hub.routes().forget(self.client);
        let hub = Arc::clone(&self.hub);
        let session = std::mem::take(&mut self.session);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                hub.tell("Target.detachFromTarget", json!({"sessionId": session})).await;
            });
        }
    }
}

impl Devtools {
    /// Takes over the server's ends of a browser's pipes (`commands` is
    /// read by the browser as its fd 3, `events` written as its fd 4) and
    /// starts the tasks that serve them. They end when the browser closes
    /// its end.
    pub(crate) fn start(commands: OwnedFd, events: OwnedFd) -> std::io::Result<Self> {
        Self::start_with_budget(commands, events, QUEUE_BUDGET_BYTES)
    }

    fn start_with_budget(commands: OwnedFd, events: OwnedFd, budget: usize) -> std::io::Result<Self> {
        let writer = pipe::Sender::from_owned_fd(commands)?;
        let reader = pipe::Receiver::from_owned_fd(events)?;
        let (to_browser, outgoing) = tokio::sync::mpsc::channel(COMMAND_QUEUE);
        let (closed, _) = watch::channel(false);
        let hub = Arc::new(Hub {
            routes: Mutex::new(Routes {
                budget,
                ..Routes::default()
            }),
            to_browser,
            closed,
            front: crate::pages::FrontPage::default(),
        });
        tokio::spawn(write_commands(writer, outgoing, hub.closed.subscribe()));
        tokio::spawn(read_messages(Arc::clone(&hub), reader));
        Ok(Self { hub, scope: None })
    }

    /// The same pipe, for connections kept inside `scope`: everything made
    /// through it (CDP clients, the live view, REST actions, recordings)
    /// sees and acts on that context session only. The hub must follow
    /// targets first ([`Devtools::follow_targets`]).
    pub fn scoped(&self, scope: Arc<Scope>) -> Devtools {
        Devtools {
            hub: Arc::clone(&self.hub),
            scope: Some(scope),
        }
    }

    /// The scope of this handle's connections, if it has one.
    pub fn scope(&self) -> Option<&Arc<Scope>> {
        self.scope.as_ref()
    }

    /// The page this handle's session was switched to (see [`crate::pages`]):
    /// the scope's for a context session, else the browser's.
    pub(crate) fn front(&self) -> &crate::pages::FrontPage {
        match &self.scope {
            Some(scope) => scope.front(),
            None => &self.hub.front,
        }
    }

    /// Puts `targets` in the order the hub saw them announced (while it
    /// follows targets); those it has not seen yet go last, in the order
    /// given.
    pub(crate) fn oldest_first(&self, targets: &mut [String]) {
        let routes = self.hub.routes();
        targets.sort_by_key(|target| routes.born.get(target).copied().unwrap_or(u64::MAX));
    }

    /// Makes the hub follow which context every target is in and the order
    /// targets appeared in (target discovery on the pipe's own session),
    /// which scoped connections and the choice of a session's active page
    /// need. Idempotent.
    pub async fn follow_targets(&self) -> Result<(), String> {
        {
            let mut routes = self.hub.routes();
            if routes.following {
                return Ok(());
            }
            routes.following = true;
        }
        let discovering = self
            .hub
            .call("Target.setDiscoverTargets", json!({"discover": true, "filter": [{}]}))
            .await;
        if let Err(error) = discovering {
            // Not following: the next context tries again (until then its
            // scoped connections find no target of theirs, and fail closed).
            self.hub.routes().following = false;
            return Err(error);
        }
        // The browser target is in no context, and discovery does not
        // report it: its id comes from asking for the pipe's own target.
        let own = self.hub.call("Target.getTargetInfo", json!({})).await?;
        let browser = serde_json::from_str::<Value>(own.get())
            .ok()
            .and_then(|own| own.pointer("/targetInfo/targetId")?.as_str().map(str::to_owned));
        if let Some(browser) = browser {
            self.hub.routes().browser_targets.insert(browser);
        }
        Ok(())
    }

    /// Opens a connection with a browser session of its own.
    /// A browser that does not answer within [`CONNECT_TIMEOUT`] (hung, or
    /// not reading its pipe) is an error.
    pub async fn connect(&self) -> Result<DevtoolsConnection, String> {
        // In a task of its own: if the caller gives up half-way, the
        // connection is still made and then dropped, which detaches the
        // browser session instead of leaving it attached in the browser.
        let devtools = self.clone();
        let attaching = tokio::spawn(async move { devtools.attach().await });
        match tokio::time::timeout(CONNECT_TIMEOUT, attaching).await {
            Ok(attached) => attached.map_err(|error| format!("connecting to the browser failed: {error}"))?,
            Err(_) => Err(format!(
                "the browser did not answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }

    async fn attach(&self) -> Result<DevtoolsConnection, String> {
        let attached = self.hub.call("Target.attachToBrowserTarget", json!({})).await?;
        let session = serde_json::from_str::<Value>(attached.get())
            .ok()
            .and_then(|value| value.get("sessionId")?.as_str().map(str::to_owned))
            .ok_or_else(|| format!("unexpected answer to Target.attachToBrowserTarget: {attached}"))?;
        let (deliver, messages) = mpsc::unbounded();
        let queued = Arc::new(AtomicUsize::new(0));
        let client = {
            let mut routes = self.hub.routes();
            if routes.closed {
                return Err(PipeClosed.to_string());
            }
            routes.next_client += 1;
            let client = routes.next_client;
            routes.owners.insert(session.clone(), client);
            routes.clients.insert(
                client,
                Client {
                    session: session.clone(),
                    deliver,
                    queued: Arc::clone(&queued),
                    scope: self.scope.clone(),
                },
            );
            client
        };
        Ok(DevtoolsConnection {
            hub: Arc::clone(&self.hub),
            client,
            session,
            to_browser: PollSender::new(self.hub.to_browser.clone()),
            messages,
            queued,
            scope: self.scope.clone(),
        })
    }

    /// Sends one command on the pipe's own session and returns its `result`
    /// (for the browser-wide questions of the launch).
    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Box<RawValue>, String> {
        self.hub.call(method, params).await
    }

    /// How many connections are open.
    #[cfg(test)]
    fn connections(&self) -> usize {
        self.hub.routes().clients.len()
    }
}

struct Hub {
    routes: Mutex<Routes>,
    to_browser: tokio::sync::mpsc::Sender<Vec<u8>>,
    closed: watch::Sender<bool>,
    /// The page the browser's session was switched to.
    front: crate::pages::FrontPage,
}

#[derive(Default)]
struct Routes {
    /// The last command number given out.
    last_number: u32,
    /// Commands sent and not answered yet, by number.
    pending: HashMap<u32, Waiter>,
    clients: HashMap<u64, Client>,
    next_client: u64,
    /// Which connection each CDP session belongs to.
    owners: HashMap<String, u64>,
    /// Browser sessions scoped connections attached to besides their own
    /// (`Target.attachToBrowserTarget`): the scope's browser-session rules
    /// apply to them too.
    browser_sessions: std::collections::HashSet<String>,
    closed: bool,
    /// How many bytes a connection's queue may hold.
    budget: usize,
    /// Whether the pipe's own session discovers targets (for scopes).
    following: bool,
    /// Which browser context each target is in (while `following`).
    contexts: HashMap<String, String>,
    /// The ids of browser targets (the pipe's own, and one per browser
    /// session a connection attached), while `following`.
    browser_targets: std::collections::HashSet<String>,
    /// The last targets destroyed, with their contexts: their destruction
    /// reaches the hub before it reaches the connections that saw them.
    destroyed: VecDeque<(String, String)>,
    /// When each open target was announced to the hub (while `following`),
    /// so that pages are known oldest first: a connection's own discovery
    /// announces the existing targets in no particular order.
    born: HashMap<String, u64>,
    /// The number the next target announced gets.
    next_birth: u64,
}

/// How many destroyed targets the hub remembers.
const DESTROYED_KEPT: usize = 256;

/// Who waits for the answer to a command.
enum Waiter {
    /// A connection, which gave the command this id (and, when scoped,
    /// what its scope does with the answer).
    Client {
        client: u64,
        id: Box<RawValue>,
        hook: AnswerHook,
    },
    /// The hub itself.
    Hub(oneshot::Sender<Result<Box<RawValue>, String>>),
    /// Nobody (a command whose answer does not matter).
    Nobody,
}

struct Client {
    /// Its browser session.
    session: String,
    deliver: mpsc::UnboundedSender<Message>,
    /// Bytes delivered and not read yet.
    queued: Arc<AtomicUsize>,
    /// The context session it is kept inside, if any.
    scope: Option<Arc<Scope>>,
}

impl Routes {
    /// A command number not in use (CDP ids are 32-bit signed integers).
    fn number(&mut self, waiter: Waiter) -> u32 {
        loop {
            self.last_number = if self.last_number >= i32::MAX as u32 {
                1
            } else {
                self.last_number + 1
            };
            if !self.pending.contains_key(&self.last_number) {
                self.pending.insert(self.last_number, waiter);
                return self.last_number;
            }
        }
    }

    /// The context a target is in, if known.
    fn context_of(&self, target: &str) -> Option<String> {
        if self.browser_targets.contains(target) {
            return Some(BROWSER_TARGET.to_owned());
        }
        self.contexts.get(target).cloned().or_else(|| {
            self.destroyed
                .iter()
                .find(|(gone, _)| gone == target)
                .map(|(_, context)| context.clone())
        })
    }

    /// Follows the pipe's own target discovery.
    fn follow(&mut self, method: &str, params: Option<&RawValue>) {
        let Some(params) = params.and_then(|params| serde_json::from_str::<Value>(params.get()).ok()) else {
            return;
        };
        let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        match method {
            "Target.targetCreated" | "Target.targetInfoChanged" => {
                if let Some(info) = params.get("targetInfo") {
                    if let Some(target) = text(info, "targetId") {
                        if !self.born.contains_key(&target) {
                            self.born.insert(target, self.next_birth);
                            self.next_birth += 1;
                        }
                    }
                    match (text(info, "targetId"), text(info, "browserContextId")) {
                        (Some(target), Some(context)) => {
                            self.contexts.insert(target, context);
                        }
                        (Some(target), None) if text(info, "type").as_deref() == Some("browser") => {
                            self.browser_targets.insert(target);
                        }
                        _ => {}
                    }
                }
            }
            "Target.targetDestroyed" => {
                if let Some(target) = text(&params, "targetId") {
                    self.born.remove(&target);
                    self.browser_targets.remove(&target);
                    if let Some(context) = self.contexts.remove(&target) {
                        if self.destroyed.len() >= DESTROYED_KEPT {
                            self.destroyed.pop_front();
                        }
                        self.destroyed.push_back((target, context));
                    }
                }
            }
            _ => {}
        }
    }

    /// Forgets a connection and everything routed to it.
    fn forget(&mut self, client: u64) -> Option<Client> {
        let removed = self.clients.remove(&client)?;
        let owners = &mut self.owners;
        self.browser_sessions
            .retain(|session| owners.get(session).is_some_and(|owner| *owner != client));
        owners.retain(|_, owner| *owner != client);
        self.pending
            .retain(|_, waiter| !matches!(waiter, Waiter::Client { client: owner, .. } if *owner == client));
        Some(removed)
    }

    /// Queues a message for a connection; closes one that fell too far behind.
    fn deliver(&mut self, client: u64, message: Message) {
        let Some(entry) = self.clients.get(&client) else {
            return;
        };
        let size = message.len();
        let queued = entry.queued.load(Ordering::Relaxed);
        if queued > 0 && queued.saturating_add(size) > self.budget {
            tracing::warn!(
                queued,
                budget = self.budget,
                "closing a DevTools connection that stopped reading (too far behind)"
            );
            self.forget(client);
            return;
        }
        entry.queued.fetch_add(size, Ordering::Relaxed);
        if entry.deliver.unbounded_send(message).is_err() {
            // The connection was dropped; its command task forgets it.
            entry.queued.fetch_sub(size, Ordering::Relaxed);
        }
    }
}

impl Hub {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        // A panic while holding the lock leaves the maps consistent (every
        // change is a single insert or remove), so a poisoned lock is usable.
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn call(&self, method: &str, params: Value) -> Result<Box<RawValue>, String> {
        let (answer, answered) = oneshot::channel();
        let number = {
            let mut routes = self.routes();
            if routes.closed {
                return Err(PipeClosed.to_string());
            }
            routes.number(Waiter::Hub(answer))
        };
        let message = json!({"id": number, "method": method, "params": params});
        if self.to_browser.send(message.to_string().into_bytes()).await.is_err() {
            self.routes().pending.remove(&number);
            return Err(PipeClosed.to_string());
        }
        match answered.await {
            Ok(outcome) => outcome.map_err(|error| format!("{method} failed: {error}")),
            Err(_) => Err(PipeClosed.to_string()),
        }
    }

    /// Sends a command whose answer nobody waits for.
    async fn tell(&self, method: &str, params: Value) {
        let number = {
            let mut routes = self.routes();
            if routes.closed {
                return;
            }
            routes.number(Waiter::Nobody)
        };
        let message = json!({"id": number, "method": method, "params": params});
        let _ = self.to_browser.send(message.to_string().into_bytes()).await;
    }

    /// Turns a connection's message into the pipe's, or into the answer
    /// that refuses it (`Err(None)`: the connection is gone).
    fn command(&self, client: u64, session: &str, text: &str) -> Result<Vec<u8>, Option<Message>> {
        let command: ClientCommand<'_> = match serde_json::from_str(text) {
            Ok(command) => command,
            Err(error) => {
                return Err(Some(refusal(
                    None,
                    -32700,
                    &format!("Message is not a valid JSON object: {error}"),
                    None,
                )))
            }
        };
        let id = match command.id {
            Some(id) if id.get().parse::<i64>().is_ok() => id,
            _ => {
                return Err(Some(refusal(
                    None,
                    -32600,
                    "Message must have integer 'id' property",
                    None,
                )))
            }
        };
        let Some(method) = command.method else {
            return Err(Some(refusal(
                Some(id),
                -32600,
                "Message must have string 'method' property",
                None,
            )));
        };
        let mut routes = self.routes();
        let Some(scope) = routes.clients.get(&client).map(|entry| entry.scope.clone()) else {
            return Err(None);
        };
        let target_session = match &command.session_id {
            None => session,
            Some(named) if routes.owners.get(named.as_ref()) == Some(&client) => named.as_ref(),
            Some(named) => {
                return Err(Some(refusal(
                    Some(id),
                    -32001,
                    "Session with given id not found.",
                    Some(named.as_ref()),
                )))
            }
        };
        let (mut params, mut hook) = (command.params.map(Cow::Borrowed), AnswerHook::None);
        if let Some(scope) = scope {
            let (verdict, answer_hook) = scope.check_command(
                &method,
                command.params,
                target_session == session || routes.browser_sessions.contains(target_session),
                |target| routes.context_of(target),
            );
            let named = command.session_id.as_deref();
            match verdict {
                CommandVerdict::Pass => {}
                CommandVerdict::Params(rewritten) => match RawValue::from_string(rewritten) {
                    Ok(rewritten) => params = Some(Cow::Owned(rewritten)),
                    Err(error) => return Err(Some(refusal(Some(id), -32603, &error.to_string(), named))),
                },
                CommandVerdict::Refuse(why) => return Err(Some(refusal(Some(id), -32000, &why, named))),
                CommandVerdict::AnswerThenClose(result) => {
                    let mut answer =
                        json!({"id": null, "result": serde_json::from_str::<Value>(result).unwrap_or_default()});
                    answer["id"] = serde_json::from_str::<Value>(id.get()).unwrap_or_default();
                    if let Some(named) = named {
                        answer["sessionId"] = json!(named);
                    }
                    // The answer first; the close after it ends the session
                    // once the connection passes it on (`poll_next`).
                    routes.deliver(client, Message::text(answer.to_string()));
                    routes.deliver(client, Message::Close(None));
                    return Err(None);
                }
            }
            hook = answer_hook;
        }
        let number = routes.number(Waiter::Client {
            client,
            id: id.to_owned(),
            hook,
        });
        serde_json::to_vec(&PipeCommand {
            id: number,
            method: &method,
            params: params.as_deref(),
            session_id: target_session,
        })
        .map_err(|error| Some(refusal(Some(id), -32603, &error.to_string(), None)))
    }

    /// Routes one message from the browser.
    fn dispatch(&self, bytes: &[u8]) {
        let message: BrowserMessage<'_> = match serde_json::from_slice(bytes) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "the browser sent a DevTools message that is not JSON; skipped");
                return;
            }
        };
        let mut routes = self.routes();
        let mut rewritten: Option<Box<RawValue>> = None;
        let (client, id) = match message.id {
            Some(number) => match routes.pending.remove(&number) {
                Some(Waiter::Client { client, id, hook }) => {
                    if hook != AnswerHook::None {
                        let scope = routes.clients.get(&client).and_then(|entry| entry.scope.clone());
                        if let (Some(scope), Some(result)) = (scope, message.result) {
                            rewritten = scope
                                .answer(&hook, result)
                                .and_then(|text| RawValue::from_string(text).ok());
                        }
                    }
                    (client, Some(id))
                }
                Some(Waiter::Hub(answer)) => {
                    let outcome = match (message.result, message.error) {
                        (_, Some(error)) => Err(error.get().to_owned()),
                        (Some(result), None) => Ok(result.to_owned()),
                        (None, None) => Ok(RawValue::NULL.to_owned()),
                    };
                    let _ = answer.send(outcome);
                    return;
                }
                Some(Waiter::Nobody) | None => return,
            },
            None => {
                // An event: it belongs to whoever owns its session (events
                // of the pipe's own session are the hub's: target
                // discovery, followed for scopes).
                let Some(session) = message.session_id.as_deref() else {
                    if let Some(method) = message.method.as_deref() {
                        routes.follow(method, message.params);
                    }
                    return;
                };
                let Some(client) = routes.owners.get(session) else {
                    return;
                };
                let client = *client;
                let scope = routes.clients.get(&client).and_then(|entry| entry.scope.clone());
                if let (Some(scope), Some(method)) = (scope, message.method.as_deref()) {
                    let verdict = scope.event(
                        method,
                        message.params,
                        |target| routes.context_of(target),
                        |child| routes.owners.get(child) == Some(&client),
                    );
                    match verdict {
                        EventVerdict::Deliver => {}
                        EventVerdict::DeliverBrowser => {
                            if let Some(child) = message.params.and_then(child_session) {
                                routes.browser_sessions.insert(child);
                            }
                        }
                        EventVerdict::Drop => return,
                        EventVerdict::Detach(child) => {
                            let number = routes.number(Waiter::Nobody);
                            drop(routes);
                            self.send_soon(json!({
                                "id": number,
                                "method": "Target.detachFromTarget",
                                "params": {"sessionId": child},
                                "sessionId": session,
                            }));
                            return;
                        }
                    }
                }
                match message.method.as_deref() {
                    Some("Target.attachedToTarget") => {
                        if let Some(child) = message.params.and_then(child_session) {
                            routes.owners.insert(child, client);
                        }
                    }
                    Some("Target.detachedFromTarget") => {
                        if let Some(child) = message.params.and_then(child_session) {
                            routes.owners.remove(&child);
                            routes.browser_sessions.remove(&child);
                        }
                    }
                    _ => {}
                }
                (client, None)
            }
        };
        let Some(entry) = routes.clients.get(&client) else {
            return;
        };
        // The connection's own browser session is, to it, no session at all.
        let session_id = message
            .session_id
            .as_deref()
            .filter(|session| *session != entry.session);
        let delivered = ClientMessage {
            id: id.as_deref(),
            method: message.method.as_deref(),
            params: message.params,
            result: rewritten.as_deref().or(message.result),
            error: message.error,
            session_id,
        };
        match serde_json::to_string(&delivered) {
            Ok(text) => routes.deliver(client, Message::text(text)),
            Err(error) => tracing::warn!(%error, "cannot re-encode a DevTools message"),
        }
    }

    /// Sends a command of the hub's own from the reader's task, which must
    /// not wait for room in the pipe.
    fn send_soon(&self, command: Value) {
        let bytes = command.to_string().into_bytes();
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(bytes)) = self.to_browser.try_send(bytes) {
            let to_browser = self.to_browser.clone();
            tokio::spawn(async move {
                let _ = to_browser.send(bytes).await;
            });
        }
    }

    /// The browser's end is gone: every connection and waiter is told.
    fn close(&self) {
        let mut routes = self.routes();
        routes.closed = true;
        routes.clients.clear();
        routes.owners.clear();
        routes.browser_sessions.clear();
        routes.pending.clear();
        routes.contexts.clear();
        drop(routes);
        self.closed.send_replace(true);
    }
}

/// The `sessionId` inside the params of `Target.attachedToTarget` and
/// `Target.detachedFromTarget`.
fn child_session(params: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "sessionId")]
        session_id: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<Params<'_>>(params.get())
        .ok()?
        .session_id
        .map(Cow::into_owned)
}

/// An error answer made here, in Chromium's shape.
fn refusal(id: Option<&RawValue>, code: i64, text: &str, session: Option<&str>) -> Message {
    let mut answer = json!({"error": {"code": code, "message": text}});
    if let Some(id) = id.and_then(|id| serde_json::from_str::<Value>(id.get()).ok()) {
        answer["id"] = id;
    }
    if let Some(session) = session {
        answer["sessionId"] = json!(session);
    }
    Message::text(answer.to_string())
}

/// A command as a connection sends it.
#[derive(Deserialize)]
struct ClientCommand<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
}

/// A command as the pipe takes it.
#[derive(Serialize)]
struct PipeCommand<'a> {
    id: u32,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
    #[serde(rename = "sessionId")]
    session_id: &'a str,
}

/// An answer or event as the browser sends it.
#[derive(Deserialize)]
struct BrowserMessage<'a> {
    #[serde(default)]
    id: Option<u32>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
}

/// An answer or event as a connection receives it.
#[derive(Serialize)]
struct ClientMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RawValue>,
    #[serde(rename = "sessionId", skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
}

/// Writes queued commands to the browser, each followed by a NUL byte,
/// until the hub goes or the browser closes its end.
async fn write_commands(
    mut writer: pipe::Sender,
    mut outgoing: tokio::sync::mpsc::Receiver<Vec<u8>>,
    mut closed: watch::Receiver<bool>,
) {
    loop {
        let bytes = tokio::select! {
            bytes = outgoing.recv() => match bytes {
                Some(bytes) => bytes,
                None => return,
            },
            _ = closed.wait_for(|closed| *closed) => return,
        };
        let written = async {
            writer.write_all(&bytes).await?;
            writer.write_all(b"\0").await
        };
        let failed = tokio::select! {
            written = written => written.is_err(),
            _ = closed.wait_for(|closed| *closed) => true,
        };
        if failed {
            return;
        }
    }
}

/// Reads the browser's messages and routes them until it closes its end.
async fn read_messages(hub: Arc<Hub>, reader: pipe::Receiver) {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut message = Vec::new();
    loop {
        message.clear();
        match read_message(&mut reader, &mut message, MAX_MESSAGE_BYTES).await {
            Ok(Some(true)) => hub.dispatch(&message),
            Ok(Some(false)) => {
                tracing::warn!("the browser sent a DevTools message over {MAX_MESSAGE_BYTES} bytes; skipped");
            }
            Ok(None) | Err(_) => break,
        }
    }
    hub.close();
}

/// Reads one NUL-ended message into `message`: `Some(true)` when read,
/// `Some(false)` when it was longer than `limit` (then read past and
/// dropped), `None` at the end of the stream.
async fn read_message<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    message: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<bool>> {
    let mut too_long = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(None);
        }
        let (chunk, ended) = match buffer.iter().position(|byte| *byte == 0) {
            Some(end) => (&buffer[..end], true),
            None => (buffer, false),
        };
        if !too_long {
            if message.len() + chunk.len() > limit {
                too_long = true;
                message.clear();
            } else {
                message.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(ended);
        reader.consume(used);
        if ended {
            return Ok(Some(!too_long));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::SinkExt;

    use super::*;

    #[tokio::test]
    async fn messages_split_on_nul_and_overlong_ones_are_skipped() {
        let input: &[u8] = b"{\"a\":1}\0\0xxxxxxxxxxxx\0{\"b\":2}\0tail";
        let mut reader = BufReader::with_capacity(4, input);
        let mut message = Vec::new();
        let mut read = Vec::new();
        loop {
            message.clear();
            match read_message(&mut reader, &mut message, 8).await.expect("read") {
                Some(true) => read.push(String::from_utf8(message.clone()).expect("utf-8")),
                Some(false) => read.push("<skipped>".to_owned()),
                None => break,
            }
        }
        assert_eq!(read, ["{\"a\":1}", "", "<skipped>", "{\"b\":2}"]);
    }

    /// The browser's ends of the pipes, played by the test.
    struct FakeBrowser {
        commands: BufReader<pipe::Receiver>,
        events: Option<pipe::Sender>,
    }

    impl FakeBrowser {
        async fn next(&mut self) -> Value {
            let mut message = Vec::new();
            let read = tokio::time::timeout(
                Duration::from_secs(5),
                read_message(&mut self.commands, &mut message, usize::MAX),
            )
            .await
            .expect("a command in time")
            .expect("read");
            assert_eq!(read, Some(true));
            serde_json::from_slice(&message).expect("JSON")
        }

        async fn send(&mut self, message: Value) {
            let events = self.events.as_mut().expect("open");
            let mut bytes = message.to_string().into_bytes();
            bytes.push(0);
            events.write_all(&bytes).await.expect("write");
        }
    }

    fn hub(budget: usize) -> (Devtools, FakeBrowser) {
        let (browser_reads, server_writes) = std::io::pipe().expect("pipe");
        let (server_reads, browser_writes) = std::io::pipe().expect("pipe");
        let devtools = Devtools::start_with_budget(server_writes.into(), server_reads.into(), budget).expect("hub");
        let fake = FakeBrowser {
            commands: BufReader::new(pipe::Receiver::from_owned_fd(browser_reads.into()).expect("receiver")),
            events: Some(pipe::Sender::from_owned_fd(browser_writes.into()).expect("sender")),
        };
        (devtools, fake)
    }

    /// Opens a connection, the fake browser giving it `session`.
    async fn connect(devtools: &Devtools, fake: &mut FakeBrowser, session: &str) -> DevtoolsConnection {
        let answer = async {
            let command = fake.next().await;
            assert_eq!(command["method"], "Target.attachToBrowserTarget");
            assert!(command.get("sessionId").is_none(), "{command}");
            fake.send(json!({"id": command["id"], "result": {"sessionId": session}}))
                .await;
        };
        let (connection, ()) = tokio::join!(devtools.connect(), answer);
        connection.expect("connected")
    }

    async fn received(connection: &mut DevtoolsConnection) -> Value {
        let message = tokio::time::timeout(Duration::from_secs(5), connection.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("message");
        serde_json::from_str(message.to_text().expect("text")).expect("JSON")
    }

    async fn nothing_for(connection: &mut DevtoolsConnection) {
        let next = tokio::time::timeout(Duration::from_millis(100), connection.next()).await;
        assert!(next.is_err(), "unexpected {next:?}");
    }

    async fn send(connection: &mut DevtoolsConnection, message: Value) {
        connection.send(Message::text(message.to_string())).await.expect("send");
    }

    #[tokio::test]
    async fn answers_and_events_reach_only_their_connection() {
        let (devtools, mut fake) = hub(QUEUE_BUDGET_BYTES);
        let mut a = connect(&devtools, &mut fake, "BA").await;
        let mut b = connect(&devtools, &mut fake, "BB").await;
        assert_eq!(devtools.connections(), 2);

        // The same id from both: renumbered, each sent as its browser session.
        send(&mut a, json!({"id": 1, "method": "Target.getTargets"})).await;
        send(
            &mut b,
            json!({"id": 1, "method": "Target.getTargets", "params": {"filter": [{}]}}),
        )
        .await;
        // The two connections' commands race each other to the pipe.
        let (first, second) = (fake.next().await, fake.next().await);
        let (from_a, from_b) = if first["sessionId"] == "BA" {
            (first, second)
        } else {
            (second, first)
        };
        assert_eq!(
            (&from_a["sessionId"], &from_b["sessionId"]),
            (&json!("BA"), &json!("BB"))
        );
        assert_ne!(from_a["id"], from_b["id"]);
        assert_eq!(from_b["params"], json!({"filter": [{}]}));
        assert!(from_a.get("params").is_none(), "{from_a}");
        // Answered in the other order, each reaches its own, with its own id
        // and no trace of the browser session.
        fake.send(json!({"id": from_b["id"], "result": {"who": "b"}, "sessionId": "BB"}))
            .await;
        fake.send(json!({"id": from_a["id"], "result": {"who": "a"}, "sessionId": "BA"}))
            .await;
        assert_eq!(received(&mut b).await, json!({"id": 1, "result": {"who": "b"}}));
        assert_eq!(received(&mut a).await, json!({"id": 1, "result": {"who": "a"}}));

        // A page attached under a's session belongs to a.
        let attached = json!({"sessionId": "PA", "targetInfo": {"type": "page"}, "waitingForDebugger": false});
        fake.send(json!({"method": "Target.attachedToTarget", "params": attached, "sessionId": "BA"}))
            .await;
        assert_eq!(
            received(&mut a).await,
            json!({"method": "Target.attachedToTarget", "params": attached})
        );
        fake.send(json!({"method": "Page.loadEventFired", "params": {"timestamp": 1.5}, "sessionId": "PA"}))
            .await;
        assert_eq!(
            received(&mut a).await,
            json!({"method": "Page.loadEventFired", "params": {"timestamp": 1.5}, "sessionId": "PA"})
        );
        // b may not use it, and the browser never hears of the attempt.
        send(
            &mut b,
            json!({"id": 2, "method": "Runtime.evaluate", "sessionId": "PA"}),
        )
        .await;
        let refused = received(&mut b).await;
        assert_eq!(
            (&refused["id"], &refused["error"]["code"]),
            (&json!(2), &json!(-32001)),
            "{refused}"
        );
        assert_eq!(refused["sessionId"], "PA");
        send(
            &mut a,
            json!({"id": 7, "method": "Runtime.evaluate", "params": {"expression": "1"}, "sessionId": "PA"}),
        )
        .await;
        let forwarded = fake.next().await;
        assert_eq!(forwarded["method"], "Runtime.evaluate");
        assert_eq!(
            (&forwarded["sessionId"], &forwarded["params"]),
            (&json!("PA"), &json!({"expression": "1"}))
        );
        fake.send(json!({"id": forwarded["id"], "result": {}, "sessionId": "PA"}))
            .await;
        assert_eq!(
            received(&mut a).await,
            json!({"id": 7, "result": {}, "sessionId": "PA"})
        );

        // Events of the pipe's own session and answers nobody waits for go
        // nowhere.
        fake.send(json!({"method": "Target.targetCreated", "params": {}})).await;
        fake.send(json!({"id": 999_999, "result": {}})).await;
        fake.send(json!({"method": "Target.targetCreated", "params": {"n": 2}, "sessionId": "BB"}))
            .await;
        assert_eq!(
            received(&mut b).await,
            json!({"method": "Target.targetCreated", "params": {"n": 2}})
        );
        nothing_for(&mut a).await;

        // Once detached, the page is nobody's.
        fake.send(json!({"method": "Target.detachedFromTarget", "params": {"sessionId": "PA"}, "sessionId": "BA"}))
            .await;
        assert_eq!(received(&mut a).await["method"], "Target.detachedFromTarget");
        send(
            &mut a,
            json!({"id": 8, "method": "Runtime.evaluate", "sessionId": "PA"}),
        )
        .await;
        assert_eq!(received(&mut a).await["error"]["code"], -32001);

        // Malformed commands are answered here, as Chromium would.
        a.send(Message::text("nope")).await.expect("send");
        assert_eq!(received(&mut a).await["error"]["code"], -32700);
        send(&mut a, json!({"method": "Browser.getVersion"})).await;
        assert_eq!(received(&mut a).await["error"]["code"], -32600);
        send(&mut a, json!({"id": "x", "method": "Browser.getVersion"})).await;
        assert_eq!(received(&mut a).await["error"]["code"], -32600);
        send(&mut a, json!({"id": 9})).await;
        assert_eq!(
            received(&mut a).await,
            json!({"id": 9, "error": {"code": -32600, "message": "Message must have string 'method' property"}})
        );

        // Dropping a connection detaches its browser session; the browser
        // hears of nothing else from it in between.
        drop(a);
        let detach = fake.next().await;
        assert_eq!(detach["method"], "Target.detachFromTarget");
        assert_eq!(detach["params"], json!({"sessionId": "BA"}));
        assert!(detach.get("sessionId").is_none(), "{detach}");
        assert_eq!(devtools.connections(), 1);

        // The browser going ends the rest.
        fake.events = None;
        assert!(tokio::time::timeout(Duration::from_secs(5), b.next())
            .await
            .expect("in time")
            .is_none());
        assert!(devtools.connect().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_browser_that_does_not_answer_is_a_connect_error_in_time() {
        let (devtools, mut fake) = hub(QUEUE_BUDGET_BYTES);
        let connecting = tokio::spawn(async move { devtools.connect().await.map(|_| ()) });
        // The browser reads the command and never answers.
        assert_eq!(fake.next().await["method"], "Target.attachToBrowserTarget");
        let outcome = connecting.await.expect("joined");
        assert_eq!(outcome, Err("the browser did not answer within 30 s".to_owned()));
    }

    #[tokio::test]
    async fn a_connection_that_stops_reading_is_closed_and_the_others_go_on() {
        let (devtools, mut fake) = hub(1000);
        let mut a = connect(&devtools, &mut fake, "BA").await;
        let mut b = connect(&devtools, &mut fake, "BB").await;
        // One message larger than the budget passes an empty queue.
        let big = "x".repeat(3000);
        fake.send(json!({"method": "Big", "params": {"data": big}, "sessionId": "BB"}))
            .await;
        assert_eq!(received(&mut b).await["params"]["data"], json!(big));
        // a stops reading: 400-byte events queue up until the budget is spent.
        let filler = "y".repeat(400);
        for _ in 0..4 {
            fake.send(json!({"method": "Filler", "params": {"data": filler}, "sessionId": "BA"}))
                .await;
        }
        fake.send(json!({"method": "After", "params": {}, "sessionId": "BB"}))
            .await;
        assert_eq!(received(&mut b).await["method"], "After");
        assert_eq!(devtools.connections(), 1, "a is closed");
        // a still reads what was queued before it was closed, then the end.
        assert_eq!(received(&mut a).await["method"], "Filler");
        assert_eq!(received(&mut a).await["method"], "Filler");
        assert!(tokio::time::timeout(Duration::from_secs(5), a.next())
            .await
            .expect("in time")
            .is_none());
        drop(a);
        assert_eq!(fake.next().await["params"], json!({"sessionId": "BA"}));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A hub with one connection (browser session `B`, which attached `P`)
    /// and no pipe behind it.
    fn hub() -> (
        Hub,
        tokio::sync::mpsc::Receiver<Vec<u8>>,
        mpsc::UnboundedReceiver<Message>,
    ) {
        let (to_browser, outgoing) = tokio::sync::mpsc::channel(16);
        let (closed, _) = watch::channel(false);
        let hub = Hub {
            routes: Mutex::new(Routes {
                budget: QUEUE_BUDGET_BYTES,
                ..Routes::default()
            }),
            to_browser,
            closed,
            front: crate::pages::FrontPage::default(),
        };
        let (deliver, messages) = mpsc::unbounded();
        {
            let mut routes = hub.routes();
            routes.clients.insert(
                1,
                Client {
                    session: "B".to_owned(),
                    deliver,
                    queued: Arc::default(),
                    scope: None,
                },
            );
            routes.owners.insert("B".to_owned(), 1);
            routes.owners.insert("P".to_owned(), 1);
        }
        (hub, outgoing, messages)
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|number| json!(number)),
            ".{0,12}".prop_map(Value::from),
            prop_oneof![Just("B"), Just("P"), Just("Q"), Just("Target.getTargets")].prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    /// Text near a command: any of its fields present or not, of any kind.
    fn command_text() -> impl Strategy<Value = String> {
        let field = |name: &'static str| prop::option::of(json_value()).prop_map(move |value| (name, value));
        prop_oneof![
            ".{0,64}",
            (field("id"), field("method"), field("params"), field("sessionId")).prop_map(|fields| {
                let (id, method, params, session) = fields;
                let mut command = serde_json::Map::new();
                for (name, value) in [id, method, params, session] {
                    if let Some(value) = value {
                        command.insert(name.to_owned(), value);
                    }
                }
                Value::Object(command).to_string()
            }),
            (
                any::<i64>(),
                json_value(),
                prop::option::of(prop_oneof![Just("B"), Just("P"), Just("Q")])
            )
                .prop_map(|(id, params, session)| {
                    let mut command = json!({"id": id, "method": "Runtime.evaluate", "params": params});
                    if let Some(session) = session {
                        command["sessionId"] = json!(session);
                    }
                    command.to_string()
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text from a client is either sent on, well formed and to one
        /// of its own sessions, or refused with a JSON error; an answer to
        /// what was sent comes back with the client's own id.
        #[test]
        fn any_command_is_forwarded_intact_or_refused(text in command_text(), result in json_value()) {
            let (hub, _outgoing, mut messages) = hub();
            match hub.command(1, "B", &text) {
                Ok(bytes) => {
                    let sent: Value = serde_json::from_slice(&bytes).expect("the pipe gets JSON");
                    let original: Value = serde_json::from_str(&text).expect("only JSON is sent on");
                    prop_assert!(original["id"].is_i64() || original["id"].is_u64());
                    prop_assert_eq!(&sent["method"], &original["method"]);
                    prop_assert!(sent["method"].is_string());
                    prop_assert!(["B", "P"].contains(&sent["sessionId"].as_str().unwrap_or("?")), "{}", sent);
                    // `"params": null` is sent as no params.
                    let given = original.get("params").filter(|params| !params.is_null());
                    prop_assert_eq!(sent.get("params"), given);
                    let answer = json!({"id": sent["id"], "result": result, "sessionId": sent["sessionId"]}).to_string();
                    hub.dispatch(answer.as_bytes());
                    // Compared as parsed from the same text (floats need not survive a round trip).
                    let result = serde_json::from_str::<Value>(&answer).expect("JSON")["result"].clone();
                    let delivered = messages.try_recv().expect("delivered");
                    let delivered: Value = serde_json::from_str(delivered.to_text().expect("text")).expect("JSON");
                    prop_assert_eq!(&delivered["id"], &original["id"]);
                    prop_assert_eq!(&delivered["result"], &result);
                    prop_assert_eq!(delivered.get("sessionId").is_some(), sent["sessionId"] == "P");
                }
                Err(Some(refusal)) => {
                    let refusal: Value = serde_json::from_str(refusal.to_text().expect("text")).expect("JSON");
                    prop_assert!(refusal["error"]["code"].is_i64(), "{}", refusal);
                    prop_assert!(refusal["error"]["message"].is_string(), "{}", refusal);
                }
                Err(None) => prop_assert!(false, "the connection exists"),
            }
        }

        /// Anything from the browser is routed or dropped without a panic,
        /// and what reaches the client is JSON.
        #[test]
        fn any_browser_message_is_routed_or_dropped(
            bytes in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..128),
                (prop::option::of(0_u32..4), prop::option::of(json_value()), json_value(), prop::option::of(prop_oneof![Just("B"), Just("P"), Just("Q")]))
                    .prop_map(|(id, method, params, session)| {
                        let mut message = json!({"params": params});
                        if let Some(id) = id { message["id"] = json!(id); }
                        if let Some(method) = method { message["method"] = method; }
                        if let Some(session) = session { message["sessionId"] = json!(session); }
                        message.to_string().into_bytes()
                    }),
            ],
        ) {
            let (hub, _outgoing, mut messages) = hub();
            // Something pending, for the answers to find.
            let _ = hub.command(1, "B", r#"{"id": 5, "method": "Browser.getVersion"}"#);
            hub.dispatch(&bytes);
            while let Ok(message) = messages.try_recv() {
                let value: Value = serde_json::from_str(message.to_text().expect("text")).expect("JSON");
                prop_assert!(value.is_object());
                prop_assert_ne!(value.get("sessionId"), Some(&json!("B")));
            }
        }
    }
}
