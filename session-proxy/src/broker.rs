//! The proxy's side of RabbitMQ: one connection, re-established when the
//! broker comes back, and the publish paths the proxy needs.
//!
//! Two publishing channels: `confirmed` waits for the broker's confirm
//! (requests, controls, events the proxy emits), `fast` does not (keystrokes
//! and the controls a viewer sends between them, which must stay in order
//! with them). Long-lived consumers open their own channels through
//! [`Broker::channel`] and rebuild them after a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use shellway_common::amqp::{self, DurableQueueOptions};
use shellway_common::topology::{KIND_CONTROL, KIND_INPUT};
use shellway_common::{Control, Event, SessionRequest, Topology};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Unused input queues of dead sessions disappear after this long.
const INPUT_QUEUE_EXPIRES: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub(crate) enum BrokerError {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message")]
    Nacked,
    #[error("not connected to RabbitMQ")]
    NotConnected,
}

#[derive(Clone)]
pub(crate) struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    name: String,
    topology: Topology,
    durable: DurableQueueOptions,
    conn: Mutex<Option<Connection>>,
    confirmed: Mutex<Option<Channel>>,
    fast: Mutex<Option<Channel>>,
    up: AtomicBool,
}

impl Broker {
    pub(crate) fn new(
        url: &str,
        name: &str,
        topology: Topology,
        durable: DurableQueueOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                name: name.to_owned(),
                topology,
                durable,
                conn: Mutex::new(None),
                confirmed: Mutex::new(None),
                fast: Mutex::new(None),
                up: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Checks the connection, reconnecting if it went away; logs changes.
    pub(crate) async fn check(&self) -> bool {
        let mut conn = self.inner.conn.lock().await;
        self.ensure_connected(&mut conn).await.is_ok()
    }

    async fn ensure_connected(&self, conn: &mut Option<Connection>) -> Result<(), BrokerError> {
        if conn.as_ref().is_some_and(|c| c.status().connected()) {
            return Ok(());
        }
        if conn.take().is_some() && self.inner.up.swap(false, Ordering::Relaxed) {
            tracing::warn!("lost the connection to RabbitMQ; reconnecting");
        }
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.inner.name.as_str()));
        let fresh = Connection::connect(&self.inner.url, props).await?;
        let ch = fresh.create_channel().await?;
        amqp::declare_shared(&ch, &self.inner.topology, &self.inner.durable).await?;
        let _ = ch.close(200, "declared".into()).await;
        *conn = Some(fresh);
        self.inner.up.store(true, Ordering::Relaxed);
        tracing::info!(connection = %self.inner.name, "connected to RabbitMQ");
        Ok(())
    }

    /// A new channel on the current connection (reconnecting if needed).
    pub(crate) async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut conn = self.inner.conn.lock().await;
        self.ensure_connected(&mut conn).await?;
        match conn.as_ref() {
            Some(c) => Ok(c.create_channel().await?),
            None => Err(BrokerError::NotConnected),
        }
    }

    async fn cached(
        &self,
        slot: &Mutex<Option<Channel>>,
        confirm: bool,
    ) -> Result<Channel, BrokerError> {
        let mut slot = slot.lock().await;
        if let Some(ch) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let ch = self.channel().await?;
        if confirm {
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
        }
        *slot = Some(ch.clone());
        Ok(ch)
    }

    /// Publishes and waits for the broker's confirm; retries once on a
    /// fresh channel if the first one was broken.
    pub(crate) async fn publish_confirmed(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let mut last = None;
        for _ in 0..2 {
            let ch = self.cached(&self.inner.confirmed, true).await?;
            let sent = ch
                .basic_publish(
                    exchange.into(),
                    key.into(),
                    BasicPublishOptions::default(),
                    body,
                    props.clone(),
                )
                .await;
            match sent {
                Ok(confirm) => match confirm.await {
                    Ok(Confirmation::Nack(_)) => return Err(BrokerError::Nacked),
                    Ok(_) => return Ok(()),
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
            self.inner.confirmed.lock().await.take();
        }
        Err(last.map_or(BrokerError::Nacked, BrokerError::from))
    }

    /// Publishes without waiting for a confirm (the keystroke path).
    async fn publish_fast(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let mut last = None;
        for _ in 0..2 {
            let ch = self.cached(&self.inner.fast, false).await?;
            match ch
                .basic_publish(
                    exchange.into(),
                    key.into(),
                    BasicPublishOptions::default(),
                    body,
                    props.clone(),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
            self.inner.fast.lock().await.take();
        }
        Err(last.map_or(BrokerError::Nacked, BrokerError::from))
    }

    /// Declares the session's input queue and binds it, once per session,
    /// before its request is published: nothing sent early is lost.
    pub(crate) async fn declare_session(&self, session: Uuid) -> Result<(), BrokerError> {
        let t = &self.inner.topology;
        let ch = self.cached(&self.inner.confirmed, true).await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(INPUT_QUEUE_EXPIRES.as_millis() as i64),
        );
        let queue = t.input_queue(session);
        ch.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
            .await?;
        ch.queue_bind(
            queue.into(),
            t.input_exchange().into(),
            session.to_string().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    /// Publishes a session request; it expires unserved after `ttl`.
    pub(crate) async fn publish_request(
        &self,
        req: &SessionRequest,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let body = serde_json::to_vec(req).unwrap_or_default();
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_expiration(ShortString::from(ttl.as_millis().to_string()));
        self.publish_confirmed("", &self.inner.topology.requests(), &body, props)
            .await
    }

    /// Tells every proxy (and the recorder) about an event of a session.
    pub(crate) async fn publish_event(
        &self,
        session: Uuid,
        event: &Event,
    ) -> Result<(), BrokerError> {
        let (key, body) = amqp::encode_event(session, event);
        let exchange = self.inner.topology.events_exchange();
        self.publish_confirmed(&exchange, &key, &body, amqp::event_properties())
            .await
    }

    /// A control message to the session's runner. `ordered` sends it on the
    /// keystroke channel so it stays in order with the viewer's typing.
    pub(crate) async fn publish_control(
        &self,
        session: Uuid,
        control: &Control,
        ordered: bool,
    ) -> Result<(), BrokerError> {
        let body = serde_json::to_vec(control).unwrap_or_default();
        let props = BasicProperties::default()
            .with_type(KIND_CONTROL.into())
            .with_content_type("application/json".into());
        let exchange = self.inner.topology.input_exchange();
        let key = session.to_string();
        if ordered {
            self.publish_fast(&exchange, &key, &body, props).await
        } else {
            self.publish_confirmed(&exchange, &key, &body, props).await
        }
    }

    /// Keystrokes: raw bytes, no confirm round trip.
    pub(crate) async fn publish_input(
        &self,
        session: Uuid,
        data: &[u8],
        user: &str,
    ) -> Result<(), BrokerError> {
        let mut headers = FieldTable::default();
        headers.insert("user".into(), AMQPValue::LongString(LongString::from(user)));
        let props = BasicProperties::default()
            .with_type(KIND_INPUT.into())
            .with_headers(headers);
        let exchange = self.inner.topology.input_exchange();
        self.publish_fast(&exchange, &session.to_string(), data, props)
            .await
    }
}

/// Declares this proxy's own queue `queue` (exclusive, deleted with the
/// connection), binds it to `exchange` with `key` and consumes it without
/// acknowledgements: for copies of messages that only matter while the
/// proxy lives (live output, heartbeats).
pub(crate) async fn consume_private(
    ch: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<lapin::Consumer, BrokerError> {
    let opts = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), opts, FieldTable::default())
        .await?;
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    Ok(ch
        .basic_consume(queue.into(), "".into(), no_ack, FieldTable::default())
        .await?)
}

/// What a runner reported, decoded from one message of the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    Output {
        meta: shellway_common::OutputMeta,
        data: bytes::Bytes,
    },
    Event(Event),
    /// Not from the broker: the session's status as the database has it,
    /// read by the live feed now and then for what the bus did not bring.
    Stored(crate::fanout::StoredStatus),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("message of unknown type {0:?}")]
    UnknownType(String),
    #[error(transparent)]
    Meta(#[from] shellway_common::output::OutputMetaError),
    #[error("malformed event: {0}")]
    Json(#[from] serde_json::Error),
}

impl Report {
    pub(crate) fn decode(props: &BasicProperties, data: Vec<u8>) -> Result<Self, ReportError> {
        use shellway_common::topology::{KIND_EVENT, KIND_OUTPUT};
        let kind = props
            .kind()
            .as_ref()
            .map(|k| k.as_str())
            .unwrap_or_default();
        match kind {
            KIND_OUTPUT => {
                let empty = FieldTable::default();
                let headers = props.headers().as_ref().unwrap_or(&empty);
                let meta = shellway_common::OutputMeta::from_headers(headers)?;
                Ok(Self::Output {
                    meta,
                    data: data.into(),
                })
            }
            KIND_EVENT => Ok(Self::Event(serde_json::from_slice(&data)?)),
            other => Err(ReportError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shellway_common::{OutputMeta, Stream};

    #[test]
    fn reports_decode_from_what_runners_send() {
        let meta = OutputMeta {
            seq: 7,
            stream: Stream::Pty,
            run: None,
        };
        let out = Report::decode(&amqp::output_properties(&meta), b"hi".to_vec());
        assert!(
            matches!(out, Ok(Report::Output { meta: m, ref data }) if m == meta && &data[..] == b"hi")
        );
        let (_, body) = amqp::encode_event(
            Uuid::nil(),
            &Event::error(shellway_common::ErrorKind::Ssh, "x"),
        );
        assert!(matches!(
            Report::decode(&amqp::event_properties(), body),
            Ok(Report::Event(_))
        ));
        assert!(Report::decode(&amqp::event_properties(), b"{nope".to_vec()).is_err());
        assert!(Report::decode(&BasicProperties::default(), vec![]).is_err());
        let no_headers =
            BasicProperties::default().with_type(shellway_common::topology::KIND_OUTPUT.into());
        assert!(Report::decode(&no_headers, vec![1]).is_err());
    }
}
