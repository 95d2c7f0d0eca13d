'use strict';
/**
 * The gateway's Prometheus metrics: prom-client's default Node.js metrics (process_*,
 * nodejs_heap_size_*, nodejs_eventloop_lag_*, nodejs_gc_duration_seconds) and the gateway's
 * own, named as the reference gateway (gateway/metrics.py) names them, so that the suite's
 * monitors and the tests' scrapes read both alike. Gauges that mirror state read it when
 * scraped.
 */

const client = require('prom-client');

const MESSAGE_STATES = ['accepted', 'sent', 'delivered', 'failed', 'rejected'];

function createMetrics(state) {
  const register = new client.Registry();
  client.collectDefaultMetrics({ register });
  const registers = [register];

  const gauge = (name, help, read, labelNames = []) =>
    new client.Gauge({ name, help, labelNames, registers, collect: read });
  const counter = (name, help, labelNames = []) =>
    new client.Counter({ name, help, labelNames, registers });

  gauge('gateway_sessions_active', 'Live sessions (initializing or ready).', function () {
    this.set(state.sessionsActive());
  });
  gauge('gateway_sessions_ready', 'Live sessions ready.', function () {
    this.set(state.sessionsReady());
  });
  gauge('gateway_sessions_limit', 'The session cap: above it, creations are refused.', function () {
    this.set(state.sessionsLimit);
  });
  gauge('gateway_queue_depth', 'Messages waiting for their server ack.', function () {
    this.set(state.queueDepth());
  });
  gauge('gateway_queue_capacity', 'Size of the bounded outbound queue.', function () {
    this.set(state.queueCapacity);
  });
  gauge('gateway_messages_in_flight', 'Accepted, not yet delivered or failed.', function () {
    this.set(state.inFlight());
  });
  gauge('gateway_websocket_connections', 'Open WebSocket event subscriptions.', function () {
    this.set(state.websocketConnections());
  });
  gauge(
    'gateway_cache_entries',
    'Entries held by a bounded cache (messages: --cache-entries; webhook_ids: inbound ids).',
    function () {
      this.labels('messages').set(state.cachedMessages());
      this.labels('webhook_ids').set(state.webhookIds());
    },
    ['cache'],
  );
  gauge(
    'gateway_retained_bytes',
    'Memory deliberately held for ever (leak: --leak-kb-per-message).',
    function () {
      this.labels('leak').set(state.leakedBytes());
    },
    ['kind'],
  );

  const messages = counter('gateway_messages_total', 'Outbound messages by state reached.', [
    'status',
  ]);
  const metrics = {
    register,
    messages: Object.fromEntries(MESSAGE_STATES.map((s) => [s, messages.labels(s)])),
    messagesRejected: counter(
      'gateway_messages_rejected_by_reason_total',
      'Send requests refused, by reason.',
      ['reason'],
    ),
    sessionsCreated: counter('gateway_sessions_created_total', 'Sessions created.'),
    sessionsRejected: counter('gateway_sessions_rejected_total', 'Session creations refused.', [
      'reason',
    ]),
    sessionsClosed: counter('gateway_sessions_closed_total', 'Sessions ended.', ['reason']),
    websocketOpened: counter(
      'gateway_websocket_connections_opened_total',
      'WebSocket subscriptions opened.',
    ),
    webhookEvents: counter('gateway_webhook_events_total', 'Inbound webhook events by outcome.', [
      'result',
    ]),
    httpRequests: counter('gateway_http_requests_total', 'HTTP requests answered.', [
      'method',
      'route',
      'status',
    ]),
    faults: counter(
      'gateway_faults_injected_total',
      'Switch activations (block: one busy-wait; leak: one message retained).',
      ['kind'],
    ),
    churnBytes: counter(
      'gateway_churn_bytes_total',
      'Short-lived garbage allocated by --churn-mb-per-s.',
    ),
    blockedSeconds: counter(
      'gateway_event_loop_blocked_seconds_total',
      'Time the event loop was held by --block-ms.',
    ),
  };
  // Series that exist from the start, at 0, so that a rate over them is defined at once.
  for (const child of Object.values(metrics.messages)) child.inc(0);
  metrics.sessionsCreated.inc(0);
  metrics.churnBytes.inc(0);
  metrics.blockedSeconds.inc(0);
  return metrics;
}

module.exports = { createMetrics };
