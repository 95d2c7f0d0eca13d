'use strict';
/**
 * The gateway's state: sessions (cap, pairing delay, owner key, per-session rate limit), the
 * outbound pipeline (queued -> ack 1 "server" -> ack 2 "device" -> ack 3 "read" if asked, or
 * ack -1 "error" when the session is gone first) and the events fanned out to each session's
 * WebSocket subscribers. The same rules and answers as the reference gateway (gateway/).
 */

const crypto = require('node:crypto');
const { performance } = require('node:perf_hooks');
const WebSocket = require('ws');

const faults = require('./faults');

const ACK_ERROR = -1;
const ACK_SERVER = 1;
const ACK_DEVICE = 2;
const ACK_READ = 3;
const ACK_NAMES = {
  [ACK_ERROR]: 'error',
  [ACK_SERVER]: 'server',
  [ACK_DEVICE]: 'device',
  [ACK_READ]: 'read',
};
// A subscriber this far behind (bytes not yet written to its socket) is closed with 1013 rather
// than letting the gateway's memory grow without bound.
const SUBSCRIBER_BACKLOG_BYTES = 8 * 1024 * 1024;
const DEDUP_CAPACITY = 100000;
const SESSION_CAP_RETRY_S = 5;

/** A refusal: HTTP status, machine code, a sentence, and for 409/429/503 when to come back. */
class ApiError extends Error {
  constructor(status, code, detail, retryAfterS = null) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfterS = retryAfterS;
  }
}

class Session {
  constructor(id, phone, ownerKey, now, pairingDelayMs, rateLimit) {
    this.id = id;
    this.phone = phone;
    this.ownerKey = ownerKey;
    this.createdAtMs = Date.now();
    this.readyAt = now + pairingDelayMs;
    this.tokens = rateLimit;
    this.tokensAt = now;
    this.messagesSent = 0;
    this.subscribers = new Set();
    this.closed = false;
  }

  status(now) {
    return now >= this.readyAt ? 'ready' : 'initializing';
  }
}

class Gateway {
  constructor(options, metrics) {
    this.options = options;
    this.metrics = metrics;
    this.sessions = new Map();
    this.byPhone = new Map();
    this.numbers = 0;
    this.queueDepth = 0;
    this.inFlight = 0;
    this.websocketConnections = 0;
    this.messageIdPrefix = '3EB0' + crypto.randomBytes(4).toString('hex').toUpperCase();
    this.messageIds = 0;
    this.seenInbound = new Set();
    this.cache = new faults.MessageCache(options.cacheEntries);
    this.startedAt = performance.now();
  }

  readyCount(now) {
    let ready = 0;
    for (const session of this.sessions.values()) if (now >= session.readyAt) ready += 1;
    return ready;
  }

  // --- sessions ------------------------------------------------------------------------------

  createSession(apiKey) {
    if (this.options.requireApiKey && !apiKey) {
      throw new ApiError(401, 'unauthorized', 'X-Api-Key header is required.');
    }
    if (this.sessions.size >= this.options.maxSessions) {
      throw new ApiError(
        503,
        'session_cap_reached',
        `The gateway holds its maximum of ${this.options.maxSessions} sessions.`,
        SESSION_CAP_RETRY_S,
      );
    }
    this.numbers += 1;
    const session = new Session(
      crypto.randomBytes(12).toString('hex'),
      '551190' + String(this.numbers).padStart(8, '0'),
      apiKey || null,
      performance.now(),
      this.options.pairingDelayMs,
      this.options.rateLimit,
    );
    this.sessions.set(session.id, session);
    this.byPhone.set(session.phone, session);
    return session;
  }

  /** The session `id`, if `apiKey` may use it (404, 401, 403 otherwise). */
  session(id, apiKey) {
    const session = this.sessions.get(id);
    if (session === undefined) {
      throw new ApiError(404, 'session_not_found', `No session '${id.slice(0, 64)}'.`);
    }
    if (!this.options.requireApiKey) return session;
    if (!apiKey) throw new ApiError(401, 'unauthorized', 'X-Api-Key header is required.');
    if (!session.ownerKey || !sameKey(apiKey, session.ownerKey)) {
      throw new ApiError(403, 'forbidden', 'This session belongs to another API key.');
    }
    return session;
  }

  closeSession(session, reason) {
    if (!this.sessions.delete(session.id)) return;
    this.byPhone.delete(session.phone);
    session.closed = true;
    // Its subscriptions end now, not when each client has answered the close.
    this.websocketConnections -= session.subscribers.size;
    for (const ws of session.subscribers) ws.close(1000, 'session closed');
    session.subscribers.clear();
    this.metrics.sessionsClosed.labels(reason).inc();
  }

  /** The session an inbound message is for: by session id, phone, or phone@c.us. */
  findRecipient(address) {
    return this.sessions.get(address) || this.byPhone.get(address.replace(/@c\.us$/, ''));
  }

  /** Spend one send from the session's bucket: null if allowed, else seconds to wait. */
  takeToken(session, now) {
    const rate = this.options.rateLimit;
    if (rate <= 0) return null;
    const tokens = Math.min(rate, session.tokens + ((now - session.tokensAt) / 1000) * rate);
    session.tokensAt = now;
    if (tokens >= 1) {
      session.tokens = tokens - 1;
      return null;
    }
    session.tokens = tokens;
    return (1 - tokens) / rate;
  }

  // --- messages ------------------------------------------------------------------------------

  /** Queue a message of a ready session that passed the rate limit; returns its id. */
  accept(session, to, body) {
    if (this.queueDepth >= this.options.queueSize) {
      throw new ApiError(
        503,
        'queue_full',
        `The outbound queue is full (${this.options.queueSize} messages).`,
        1,
      );
    }
    this.messageIds += 1;
    const id = this.messageIdPrefix + this.messageIds.toString(16).toUpperCase().padStart(12, '0');
    this.queueDepth += 1;
    this.inFlight += 1;
    this.metrics.messages.accepted.inc();
    session.messagesSent += 1;
    setTimeout(() => this.sendToServer(session, id), this.options.serverAckMs);
    if (this.options.leakKbPerMessage > 0) {
      faults.retainMessageHistory(id, this.options.leakKbPerMessage);
      this.metrics.faults.labels('leak').inc();
    }
    this.cache.remember(id, { session: session.id, to, body, at: Date.now() });
    return id;
  }

  sendToServer(session, id) {
    this.queueDepth -= 1;
    if (session.closed) {
      this.finish(session, id, ACK_ERROR);
      return;
    }
    this.metrics.messages.sent.inc();
    this.ack(session, id, ACK_SERVER);
    setTimeout(() => this.finish(session, id, ACK_DEVICE), this.options.deviceAckMs);
  }

  finish(session, id, ack) {
    this.inFlight -= 1;
    this.metrics.messages[ack === ACK_DEVICE ? 'delivered' : 'failed'].inc();
    this.ack(session, id, ack);
    if (ack === ACK_DEVICE && this.options.readAckMs > 0) {
      setTimeout(() => this.ack(session, id, ACK_READ), this.options.readAckMs);
    }
  }

  ack(session, messageId, ack) {
    this.publish(session, {
      event: 'message_ack',
      messageId,
      ack,
      ackName: ACK_NAMES[ack],
      timestamp: Date.now(),
    });
  }

  /** True the first time an inbound message id is seen (bounded memory of ids). */
  rememberInbound(messageId) {
    if (this.seenInbound.has(messageId)) return false;
    this.seenInbound.add(messageId);
    if (this.seenInbound.size > (this.options.dedupCapacity ?? DEDUP_CAPACITY)) {
      this.seenInbound.delete(this.seenInbound.values().next().value);
    }
    return true;
  }

  // --- events --------------------------------------------------------------------------------

  subscribe(session, ws) {
    session.subscribers.add(ws);
    this.websocketConnections += 1;
    this.metrics.websocketOpened.inc();
    ws.on('close', () => {
      if (session.subscribers.delete(ws)) this.websocketConnections -= 1;
    });
  }

  publish(session, event) {
    if (session.subscribers.size === 0) return;
    const text = JSON.stringify(event);
    for (const ws of session.subscribers) {
      if (ws.readyState !== WebSocket.OPEN) continue;
      if (ws.bufferedAmount > SUBSCRIBER_BACKLOG_BYTES) ws.close(1013, 'too far behind');
      else ws.send(text);
    }
  }
}

function sameKey(given, owner) {
  const a = Buffer.from(given);
  const b = Buffer.from(owner);
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

module.exports = { ApiError, Gateway };
