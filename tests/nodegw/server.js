#!/usr/bin/env node
'use strict';
/**
 * A small Node.js gateway speaking the plan's API (conf/targets/plan.yaml) as the reference
 * gateway (gateway/app.py) answers it, for the suite's tests of a Node.js target: the same
 * routes, status codes, JSON shapes and X-Api-Key check, prom-client's Node.js metrics, and
 * switches that make a leak, a blocked event loop or GC churn measurable (faults.js).
 *
 *   node tests/nodegw/server.js [--port 0] [--leak-kb-per-message N] [--block-ms M ...]
 *
 * Prints `gateway listening on http://HOST:PORT` once listening (the line the tests wait for);
 * a bad flag or a busy port is one line on stderr and exit code 2. `--help` lists the flags.
 * webhookUrl is checked and kept out of the way: acks come over the WebSocket only.
 */

const http = require('node:http');
const net = require('node:net');
const { performance } = require('node:perf_hooks');
const { parseArgs } = require('node:util');
const { WebSocketServer } = require('ws');

const faults = require('./faults');
const { ApiError, Gateway } = require('./gateway');
const { createMetrics } = require('./metrics');

const USAGE_ERROR = 2;
const MAX_REQUEST_BYTES = 1024 * 1024;
const MAX_MESSAGE_BODY_BYTES = 64 * 1024;
const MAX_TIMESTAMP_MS = 2 ** 53 - 1;
const RECIPIENT = /^[0-9]{10,15}(@c\.us)?$/;
const EVENTS_PATH = /^\/api\/sessions\/([^/]+)\/events$/;

// name: [default, help, kind]; kind "int" or "number" (>= 0), "flag" (boolean), "host".
const FLAGS = {
  host: ['127.0.0.1', 'a loopback address to listen on (only)', 'host'],
  port: ['0', '0: a free port, printed', 'int'],
  'pairing-delay-ms': ['200', 'create to ready', 'number'],
  'rate-limit': ['10', 'messages/s per session, a bucket of one second (0: none)', 'number'],
  'max-sessions': ['5000', 'above it, creations get 503 + Retry-After', 'int'],
  'queue-size': ['10000', 'messages awaiting their server ack; above it, 503', 'int'],
  'server-ack-ms': ['20', 'accepted to ack 1 (server)', 'number'],
  'device-ack-ms': ['50', 'ack 1 to ack 2 (device)', 'number'],
  'read-ack-ms': ['0', 'ack 2 to ack 3 (read); 0: no read acks', 'number'],
  'require-api-key': [false, "401 without X-Api-Key, 403 with another than the session's", 'flag'],
  'leak-kb-per-message': ['0', 'KiB kept for ever per message (retainMessageHistory)', 'int'],
  'block-ms': ['0', 'busy-wait this long on the event loop (blockEventLoop) ...', 'number'],
  'block-every-ms': ['1000', '... every this many ms', 'number'],
  'churn-mb-per-s': ['0', 'MB/s of short-lived garbage (churnBuffers)', 'number'],
  'cache-entries': ['0', 'the last K messages kept (gateway_cache_entries)', 'int'],
  'dedup-capacity': ['100000', 'inbound webhook ids remembered (gateway_cache_entries)', 'int'],
  help: [false, 'this text', 'flag'],
};

function usage() {
  const lines = ['usage: node tests/nodegw/server.js [flags]', ''];
  for (const [name, [fallback, help, kind]] of Object.entries(FLAGS)) {
    const shown = kind === 'flag' ? `--${name}` : `--${name} ${kind === 'host' ? 'HOST' : 'N'}`;
    const given = kind === 'flag' ? '' : ` (default: ${fallback})`;
    lines.push(`  ${shown.padEnd(28)} ${help}${given}`);
  }
  return lines.join('\n');
}

function fail(message) {
  process.stderr.write(`gateway: ${message}\n`);
  process.exit(USAGE_ERROR);
}

/** The flags as an options object (camelCase names); a bad one ends the process, exit 2. */
function parseFlags(argv) {
  const spec = {};
  for (const [name, [fallback, , kind]] of Object.entries(FLAGS)) {
    spec[name] = { type: kind === 'flag' ? 'boolean' : 'string', default: fallback };
  }
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: spec, strict: true }));
  } catch (error) {
    fail(error.message.split('\n')[0]);
  }
  if (values.help) {
    process.stdout.write(usage() + '\n');
    process.exit(0);
  }
  const options = {};
  for (const [name, [, , kind]] of Object.entries(FLAGS)) {
    const key = name.replace(/-([a-z])/g, (_, letter) => letter.toUpperCase());
    const text = values[name];
    if (kind === 'flag' || kind === 'host') {
      options[key] = text;
      continue;
    }
    const value = Number(text);
    if (text.trim() === '' || !Number.isFinite(value) || value < 0) {
      fail(`--${name} ${text}: not a number >= 0`);
    }
    if (kind === 'int' && !Number.isInteger(value)) fail(`--${name} ${text}: not a whole number`);
    options[key] = value;
  }
  if (!isLoopback(options.host)) {
    fail(`--host ${options.host} is not a loopback address: this gateway serves loopback only`);
  }
  if (options.port > 65535) fail(`--port ${options.port}: not a port`);
  if (options.blockMs > 0 && options.blockEveryMs < 1) fail('--block-every-ms must be >= 1');
  return options;
}

function isLoopback(host) {
  if (host === 'localhost' || host === '::1') return true;
  return net.isIPv4(host) && host.startsWith('127.');
}

// --- HTTP plumbing ---------------------------------------------------------------------------

function reply(res, status, payload, headers = {}) {
  const body = JSON.stringify(payload);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function replyError(res, error) {
  const content = { error: error.code, detail: error.detail };
  const headers = {};
  if (error.retryAfterS !== null) {
    // The header takes whole seconds (RFC 9110); the body keeps the precise figure.
    headers['Retry-After'] = String(Math.max(1, Math.ceil(error.retryAfterS)));
    content.retryAfterMs = Math.round(error.retryAfterS * 1000);
  }
  reply(res, error.status, content, headers);
}

const tooLarge = () =>
  new ApiError(
    413,
    'payload_too_large',
    `The request body is larger than ${MAX_REQUEST_BYTES} bytes.`,
  );

/** The request's body, at most MAX_REQUEST_BYTES, whether announced or chunked. */
function readBody(req) {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length']) > MAX_REQUEST_BYTES) {
      reject(tooLarge());
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        req.removeAllListeners('data');
        req.resume(); // drain what is still coming, unread
        reject(tooLarge());
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

async function readObject(req) {
  const body = await readBody(req);
  let value;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw invalid('The body is not valid JSON.');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid('The body must be a JSON object.');
  }
  return value;
}

const invalid = (detail) => new ApiError(400, 'invalid_request', detail);

/** `object[name]` as a string of `min` to `max` characters; `optional`: may be absent or null. */
function text(object, name, { min = 0, max = Infinity, optional = false, where = name } = {}) {
  const value = object[name];
  if (value === undefined || value === null) {
    if (optional) return null;
    throw invalid(`${where}: Field required`);
  }
  if (typeof value !== 'string') throw invalid(`${where}: Input should be a valid string`);
  if (value.length < min) throw invalid(`${where}: String should have at least ${min} characters`);
  if (value.length > max) throw invalid(`${where}: String should have at most ${max} characters`);
  return value;
}

function webhookUrlOf(object) {
  const url = text(object, 'webhookUrl', { max: 2048, optional: true });
  if (url === null) return null;
  let parts;
  try {
    parts = new URL(url);
  } catch {
    parts = null;
  }
  if (!parts || !['http:', 'https:'].includes(parts.protocol) || /[\x00-\x1f\x7f]/.test(url)) {
    throw new ApiError(400, 'invalid_webhook_url', 'webhookUrl must be an http(s) URL.');
  }
  return url;
}

// --- the API ---------------------------------------------------------------------------------

function createServer(options) {
  let gw = null;
  const metrics = createMetrics({
    sessionsActive: () => gw.sessions.size,
    sessionsReady: () => gw.readyCount(performance.now()),
    sessionsLimit: options.maxSessions,
    queueDepth: () => gw.queueDepth,
    queueCapacity: options.queueSize,
    inFlight: () => gw.inFlight,
    websocketConnections: () => gw.websocketConnections,
    cachedMessages: () => gw.cache.size,
    webhookIds: () => gw.seenInbound.size,
    leakedBytes: faults.leakedBytes,
  });
  gw = new Gateway(options, metrics);
  const apiKey = (req) => req.headers['x-api-key'] || null;

  async function createSession(req, res) {
    const payload = await readObject(req);
    text(payload, 'apiKey', { min: 1, max: 256 });
    webhookUrlOf(payload);
    let session;
    try {
      session = gw.createSession(apiKey(req));
    } catch (refusal) {
      if (refusal instanceof ApiError) metrics.sessionsRejected.labels(refusal.code).inc();
      throw refusal;
    }
    metrics.sessionsCreated.inc();
    reply(res, 201, { sessionId: session.id, status: session.status(performance.now()) });
  }

  function getSession(req, res, id) {
    const session = gw.session(id, apiKey(req));
    reply(res, 200, {
      sessionId: session.id,
      status: session.status(performance.now()),
      phone: session.phone,
      createdAt: session.createdAtMs,
      messagesSent: session.messagesSent,
      subscribers: session.subscribers.size,
    });
  }

  function deleteSession(req, res, id) {
    const session = gw.session(id, apiKey(req));
    gw.closeSession(session, 'deleted');
    reply(res, 200, { sessionId: session.id, status: 'closed' });
  }

  async function sendMessage(req, res, id) {
    let messageId;
    try {
      const session = gw.session(id, apiKey(req));
      const payload = await readObject(req);
      const to = text(payload, 'to', { max: 64 });
      const body = text(payload, 'body');
      if (!RECIPIENT.test(to)) {
        throw new ApiError(
          400,
          'invalid_recipient',
          "'to' must be 10 to 15 digits, optionally followed by '@c.us'.",
        );
      }
      if (!body) throw new ApiError(400, 'empty_body', "'body' must not be empty.");
      if (Buffer.byteLength(body) > MAX_MESSAGE_BODY_BYTES) {
        throw new ApiError(
          413,
          'body_too_large',
          `'body' is larger than ${MAX_MESSAGE_BODY_BYTES} bytes.`,
        );
      }
      const now = performance.now();
      if (now < session.readyAt) {
        throw new ApiError(
          409,
          'session_not_ready',
          "The session is still initializing; retry when its status is 'ready'.",
          (session.readyAt - now) / 1000,
        );
      }
      const waitS = gw.takeToken(session, now);
      if (waitS !== null) {
        throw new ApiError(
          429,
          'rate_limited',
          `Above ${options.rateLimit} messages/s for this session.`,
          waitS,
        );
      }
      messageId = gw.accept(session, to, body);
    } catch (refusal) {
      if (refusal instanceof ApiError) {
        metrics.messages.rejected.inc();
        metrics.messagesRejected.labels(refusal.code).inc();
      }
      throw refusal;
    }
    reply(res, 202, { messageId, status: 'queued' });
  }

  async function webhook(req, res) {
    if (options.requireApiKey && !apiKey(req)) {
      throw new ApiError(401, 'unauthorized', 'X-Api-Key header is required.');
    }
    const event = await readObject(req);
    if (event.type !== 'message_create') throw invalid("type: Input should be 'message_create'");
    const timestamp = event.timestamp;
    if (!Number.isInteger(timestamp) || timestamp < 0 || timestamp > MAX_TIMESTAMP_MS) {
      throw invalid(`timestamp: Input should be a whole number from 0 to ${MAX_TIMESTAMP_MS}`);
    }
    const message = event.message;
    if (message === null || typeof message !== 'object' || Array.isArray(message)) {
      throw invalid('message: Input should be an object');
    }
    const id = text(message, 'id', { min: 1, max: 256, where: 'message.id' });
    const from = text(message, 'from', { min: 1, max: 128, where: 'message.from' });
    const to = text(message, 'to', { min: 1, max: 128, where: 'message.to' });
    const body = text(message, 'text', {
      max: MAX_MESSAGE_BODY_BYTES,
      optional: true,
      where: 'message.text',
    });
    if (!gw.rememberInbound(id)) {
      metrics.webhookEvents.labels('duplicate').inc();
      reply(res, 200, { received: true, duplicate: true });
      return;
    }
    metrics.webhookEvents.labels('processed').inc();
    const recipient = gw.findRecipient(to);
    if (recipient !== undefined) {
      gw.publish(recipient, {
        event: 'message_create',
        messageId: id,
        from,
        to,
        text: body || '',
        timestamp,
      });
    }
    reply(res, 200, { received: true, duplicate: false });
  }

  function health(req, res) {
    reply(res, 200, {
      status: 'ok',
      sessions: gw.sessions.size,
      queueDepth: gw.queueDepth,
      uptimeS: Math.round(performance.now() - gw.startedAt) / 1000,
    });
  }

  async function prometheus(req, res) {
    const body = await metrics.register.metrics();
    res.writeHead(200, { 'Content-Type': metrics.register.contentType });
    res.end(body);
  }

  /** [route template, {method: handler}, session id or null] of a path. */
  function route(pathname) {
    if (pathname === '/health') return ['/health', { GET: health }, null];
    if (pathname === '/metrics') return ['/metrics', { GET: prometheus }, null];
    if (pathname === '/api/webhook') return ['/api/webhook', { POST: webhook }, null];
    if (pathname === '/api/sessions') return ['/api/sessions', { POST: createSession }, null];
    const parts = pathname.split('/');
    const sessionPath = parts[1] === 'api' && parts[2] === 'sessions' && parts[3];
    if (parts.length < 4 || parts.length > 5 || !sessionPath) {
      return ['unmatched', null, null];
    }
    let id;
    try {
      id = decodeURIComponent(parts[3]);
    } catch {
      return ['unmatched', null, null];
    }
    if (parts.length === 4) {
      return ['/api/sessions/{id}', { GET: getSession, DELETE: deleteSession }, id];
    }
    if (parts[4] === 'messages') return ['/api/sessions/{id}/messages', { POST: sendMessage }, id];
    if (parts[4] === 'events') return ['/api/sessions/{id}/events', {}, id];
    return ['unmatched', null, null];
  }

  async function onRequest(req, res) {
    const pathname = req.url.split('?', 1)[0];
    const [template, handlers, id] = route(pathname);
    res.on('finish', () => {
      metrics.httpRequests.labels(req.method, template, String(res.statusCode)).inc();
    });
    try {
      if (handlers === null) throw new ApiError(404, 'not_found', 'Not Found');
      const handler = handlers[req.method];
      if (handler === undefined) {
        if (template === '/api/sessions/{id}/events') {
          throw new ApiError(426, 'upgrade_required', 'A WebSocket: connect with an Upgrade.');
        }
        throw new ApiError(405, 'method_not_allowed', 'Method Not Allowed');
      }
      await handler(req, res, id);
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof ApiError) {
        // A refused body may still be arriving: close the connection instead of reading it.
        if (error.status === 413) res.setHeader('Connection', 'close');
        replyError(res, error);
      } else {
        replyError(res, new ApiError(500, 'internal_error', `Unexpected ${error && error.name}.`));
      }
    }
  }

  const server = http.createServer(onRequest);
  // Load generators keep idle connections for a while between requests: closing them sooner
  // races with the next request on them (as the reference gateway's 75 s).
  server.keepAliveTimeout = 75000;
  server.headersTimeout = 76000;

  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  server.on('upgrade', (req, socket, head) => {
    const match = EVENTS_PATH.exec(req.url.split('?', 1)[0]);
    if (match === null) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {}); // a client gone mid-frame: its close follows
      let session;
      try {
        session = gw.session(decodeURIComponent(match[1]), apiKey(req));
      } catch (refusal) {
        // 4000 + HTTP status: the usual convention for application close codes, sent after the
        // handshake, as a close before it would be an HTTP error without the code.
        if (refusal instanceof ApiError) ws.close(4000 + refusal.status, refusal.code);
        else ws.close(1011);
        return;
      }
      gw.subscribe(session, ws);
    });
  });

  const stopFaults = faults.startFaults(options, {
    blocked: (ms) => {
      metrics.faults.labels('block').inc();
      metrics.blockedSeconds.inc(ms / 1000);
    },
    churned: (bytes) => metrics.churnBytes.inc(bytes),
  });

  function close() {
    stopFaults();
    for (const ws of wss.clients) ws.close(1001, 'gateway stopping');
    server.close();
    server.closeAllConnections();
  }

  return { server, close };
}

function main() {
  const options = parseFlags(process.argv.slice(2));
  const { server, close } = createServer(options);
  server.on('error', (error) => {
    if (error.code === 'EADDRINUSE') {
      fail(`port ${options.port} on ${options.host} is already in use`);
    }
    fail(`cannot listen on ${options.host}:${options.port}: ${error.message}`);
  });
  server.listen({ host: options.host, port: options.port, backlog: 2048 }, () => {
    const { address, port } = server.address();
    const shown = address.includes(':') ? `[${address}]` : address;
    process.stdout.write(`gateway listening on http://${shown}:${port}\n`);
  });
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      close();
      process.exit(0);
    });
  }
}

if (require.main === module) main();

module.exports = { createServer, parseFlags };
