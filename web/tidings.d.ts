// Types of the Tidings browser client (tidings.js).

/** Close code the client sends when reconnect() drops the connection. */
export declare const CLOSE_RECONNECT: 4000;
/** Close code of a connection with no frame for 2 × the server's heartbeat. */
export declare const CLOSE_HEARTBEAT: 4001;
/** Close code of a connection that got no welcome within connectTimeout. */
export declare const CLOSE_CONNECT_TIMEOUT: 4002;

/** Connection state. */
export type State = "connecting" | "open" | "reconnecting" | "closed";

/**
 * How the client reaches the broker: a WebSocket (`/v1/ws`), an HTTP
 * streaming session (`/v1/stream`: a streamed GET for frames, POSTs for
 * commands, the same session), or Server-Sent Events (`/v1/sse`:
 * receive-only; publish, history, presence and refresh reject with code
 * "unsupported").
 */
export type Transport = "websocket" | "http-stream" | "sse";

/** Protocol error codes, plus the client's own. */
export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "rate_limited"
  | "too_large"
  | "unavailable"
  | "internal"
  | "timeout"
  | "closed"
  | "token"
  | "disconnected"
  | "unsupported"
  | (string & {});

/** An error answered by the broker, or a failure of the client. */
export declare class TidingsError extends Error {
  constructor(code: ErrorCode, message: string, status?: number);
  readonly code: ErrorCode;
  /** HTTP status of a refused connection (401, 403). */
  readonly status?: number;
}

/** A position in a topic's stream: the last offset seen within an epoch. */
export interface Position {
  offset: number;
  epoch: string;
}

/** What publish() resolves with. */
export interface Published {
  id: string;
  offset: number;
  epoch: string;
}

/** Options of history(). */
export interface HistoryOptions {
  /** Read the messages after this position (as position() returns). */
  since?: Position;
  /** At most this many messages (1–1000; default 100). */
  limit?: number;
  /** Newest first. */
  reverse?: boolean;
}

/** What history() resolves with. */
export interface History<T = unknown> {
  topic: string;
  /** The topic's current position. */
  position: Position;
  /** False, with no messages, when since is of another epoch or older than history. */
  recovered: boolean;
  messages: Message<T>[];
}

/** A delivered message. */
export interface Message<T = unknown> {
  /** The exact topic it was published to. */
  topic: string;
  id: string;
  offset: number;
  epoch: string;
  /** RFC 3339 time the broker accepted it. */
  time: string;
  /** The published JSON value. */
  data: T;
  /** The wildcard pattern it matched, for wildcard subscriptions. */
  sub?: string;
}

/** Why a subscription's stream jumped; the subscriber should refetch its state. */
export type ResetReason = "history_lost" | "gap" | "not_recovered" | "resubscribed";

export interface ResetInfo {
  /** The topic (or, for "resubscribed", the pattern). */
  topic: string;
  /** The wildcard pattern, for resets delivered through one. */
  sub?: string;
  /** The stream continues after this position (absent for "resubscribed"). */
  epoch?: string;
  offset?: number;
  reason: ResetReason;
}

/** A session that joined or left a topic (`join` and `leave` frames, when the broker has join/leave on for it). */
export interface JoinInfo {
  topic: string;
  session: string;
  /** The session's user (its token's `sub`); "" when anonymous. */
  user: string;
  /** The `info` claim of the session's token, if any. */
  info?: Record<string, unknown>;
}

/** A session present on a topic. */
export interface PresenceClient {
  session: string;
  /** The session's user (its token's `sub`); "" when anonymous. */
  user: string;
  /** The `info` claim of the session's token, if any. */
  info?: Record<string, unknown>;
  /** The broker node the session is connected to. */
  node: string;
}

/** What presence() resolves with. */
export interface Presence {
  topic: string;
  clients: PresenceClient[];
}

/** What presenceStats() resolves with. */
export interface PresenceStats {
  topic: string;
  /** Sessions present on the topic. */
  sessions: number;
  /** Distinct users among them. */
  users: number;
}

export interface SubscribeOptions {
  /** Called when messages may have been missed: refetch your state. */
  onReset?: (info: ResetInfo) => void;
  /**
   * Called when the broker refuses the subscription, or ends it (an
   * `unsubscribed` frame without `ref`: a token sent with `refresh` no
   * longer allows it, or the server API unsubscribed the session; code
   * "forbidden", message "the broker ended the subscription to <topic>").
   * Either way the subscription is dropped: no more messages, no
   * resubscribe on reconnect.
   * Without onError, the client's `error` event gets the error.
   */
  onError?: (error: TidingsError) => void;
  /** Exact topics: start after this position (e.g. one kept across page loads). */
  since?: Position;
  /** Called when a session subscribes to the topic (only where the broker has join/leave on). */
  onJoin?: (info: JoinInfo) => void;
  /** Called when a session unsubscribes from the topic or ends (only where the broker has join/leave on). */
  onLeave?: (info: JoinInfo) => void;
}

export interface BackoffOptions {
  /** First delay bound in ms. Default 500. */
  base?: number;
  /** Largest delay bound in ms. Default 30000. */
  cap?: number;
  /** A connection up this long (ms) starts the schedule again. Default 60000. */
  stable?: number;
  /** Uniform random numbers in [0, 1). Default Math.random. */
  random?: () => number;
  /** Clock in ms. Default Date.now. */
  now?: () => number;
}

export interface TidingsOptions {
  /** JWT sent as the `token` query parameter. */
  token?: string;
  /**
   * Called for a token before the first connection when `token` is not set,
   * after a 1008 close about the token, and after a 401. When the current
   * token is a JWT with `exp`, also called shortly before it expires (at 80 %
   * of its remaining lifetime, at least 5 s before exp, with jitter): the new
   * token is sent on the open session with `refresh`. If that fails (an
   * `error` event) the broker closes the session with 1008 `token expired` at
   * exp and the client calls getToken again and reconnects.
   */
  getToken?: () => string | Promise<string>;
  /** Reconnect schedule (full jitter). */
  backoff?: Omit<BackoffOptions, "random" | "now">;
  /** Random source of every delay, [0, 1). Default Math.random. */
  random?: () => number;
  /** Bound of the random delay before reconnecting after a 1001 (ms). Default 2000. */
  goingAwayDelay?: number;
  /** Time allowed for the welcome frame (ms). Default 10000. */
  connectTimeout?: number;
  /**
   * The transports to try, in order. Default ["websocket", "http-stream",
   * "sse"]. A transport that fails to open while the server answers
   * plain HTTP (a proxy refuses WebSocket upgrades, or an endpoint is not
   * there), or gives no welcome in time (connectTimeout; fallbackTimeout
   * once a WebSocket is open), is followed at once by the next; when
   * each has failed, the client backs off and starts again, with the one
   * that worked last. Resume, refresh and every callback work the same
   * on each (SSE: see Transport). The endpoint's path ends in /ws; the
   * others are found next to it (/stream, /sse).
   */
  transports?: Transport[];
  /**
   * Time allowed for the welcome frame (ms) once a WebSocket is open,
   * when another transport is left to try: a proxy may pass the upgrade
   * and hold the frames. Default 5000.
   */
  fallbackTimeout?: number;
  /** Time allowed for a publish, queueing included (ms). Default 10000. */
  publishTimeout?: number;
  /** Consecutive refused connections (HTTP 401/403) before giving up. Default 3. */
  maxRefusals?: number;
  /** Ask the endpoint over HTTP why a connection failed. Default true. */
  probe?: boolean;
}

/** Exponential backoff with full jitter. */
export declare class Backoff {
  constructor(options?: BackoffOptions);
  attempt: number;
  /** The delay before the next attempt in ms: uniform in [0, min(cap, base·2^attempt)). */
  next(): number;
  /** A connection is up. */
  connected(): void;
  /** The connection ended; after a stable one the schedule starts again. */
  disconnected(): void;
}

/** A handle on one subscribe() call. */
export declare class Subscription {
  private constructor();
  /** The topic or pattern. */
  readonly topic: string;
  /** Resolves once the broker has answered the subscription; rejects if it refused. */
  readonly ready: Promise<void>;
  /** Exact topics: the last delivered position. */
  readonly position: Position | undefined;
  unsubscribe(): void;
}

export interface TidingsOpenEvent extends Event {
  readonly session: string;
  readonly node: string;
  /** The token's `sub`; "" for an anonymous session. */
  readonly user: string;
  /** Seconds between the server's pings. */
  readonly heartbeat: number;
}

export interface TidingsCloseEvent extends Event {
  readonly code: number;
  readonly reason: string;
}

export interface TidingsErrorEvent extends Event {
  readonly error: TidingsError;
  /** Set when the client gave up for good. */
  readonly fatal?: boolean;
}

export interface TidingsStateEvent extends Event {
  readonly state: State;
  /** The transport in use, or being tried. */
  readonly transport: Transport | undefined;
  /** When reconnecting: the delay before the next attempt, in ms. */
  readonly delay?: number;
  /**
   * When reconnecting: the close code that caused it. When closed because
   * the server closed with 4500–4999 (do not reconnect): that code.
   */
  readonly code?: number;
  /** When closed because the server closed with 4500–4999: its reason. */
  readonly reason?: string;
}

/** The broker subscribed the session to a topic (the token's `channels`, or the server API). */
export interface TidingsSubscribedEvent extends Event {
  readonly topic: string;
}

/** The broker ended a subscription it had made, or refused it again after a reconnect. */
export interface TidingsUnsubscribedEvent extends Event {
  readonly topic: string;
  /** Code "forbidden" when the broker ended it; the broker's refusal otherwise. */
  readonly error: TidingsError;
}

/** A message of a subscription the broker made. */
export interface TidingsMessageEvent extends Event, Readonly<Message> {}

/** A reset of a subscription the broker made. */
export interface TidingsResetEvent extends Event, Readonly<ResetInfo> {}

/** A join or leave on a subscription the broker made. */
export interface TidingsJoinEvent extends Event, Readonly<JoinInfo> {}

export interface TidingsEventMap {
  open: TidingsOpenEvent;
  close: TidingsCloseEvent;
  error: TidingsErrorEvent;
  state: TidingsStateEvent;
  subscribed: TidingsSubscribedEvent;
  unsubscribed: TidingsUnsubscribedEvent;
  message: TidingsMessageEvent;
  reset: TidingsResetEvent;
  join: TidingsJoinEvent;
  leave: TidingsJoinEvent;
}

/**
 * A Tidings connection that reconnects and resumes on its own.
 *
 * Subscriptions the broker makes (`subscribed` frames without `ref`: the
 * token's `channels` claim at connect, or the server API) are reported with
 * the `subscribed` event; their messages, resets, joins and leaves come as
 * `message`, `reset`, `join` and `leave` events, and to the callbacks of any
 * subscribe() to the same topic. They last until the broker ends them
 * (`unsubscribed` event); unsubscribe() only removes that callback. After a
 * reconnect the client subscribes to them again with `since`, as to its own.
 *
 * A close with code 4000–4499 is followed by a reconnect with backoff; one
 * with 4500–4999 is final: an `error` event (code "disconnected", the
 * reason as message, `fatal`) and the `closed` state with `code` and `reason`.
 */
export declare class Tidings extends EventTarget {
  /** url defaults to /v1/ws on the page's host; http(s) URLs are turned into ws(s). */
  constructor(url?: string | URL, options?: TidingsOptions);
  readonly url: string;
  readonly options: TidingsOptions;
  readonly state: State;
  /** Session id, node and user (the token's `sub`, "" when anonymous) of the current connection. */
  readonly session: string | undefined;
  readonly node: string | undefined;
  readonly user: string | undefined;
  /** The transport in use, or being tried (undefined before the first attempt). */
  readonly transport: Transport | undefined;
  /** Subscribes to an exact topic or a wildcard pattern (`*`, `>`). */
  subscribe<T = unknown>(pattern: string, callback: (message: Message<T>) => void, options?: SubscribeOptions): Subscription;
  /** Publishes data to an exact topic; rejects with a TidingsError. */
  publish(topic: string, data: unknown): Promise<Published>;
  /** Reads the history of an exact topic the session may subscribe to. */
  history<T = unknown>(topic: string, options?: HistoryOptions): Promise<History<T>>;
  /** The sessions present on a topic the session may subscribe to (where the broker has presence on); rejects with a TidingsError. */
  presence(topic: string): Promise<Presence>;
  /** How many sessions and users are present on a topic the session may subscribe to; rejects with a TidingsError. */
  presenceStats(topic: string): Promise<PresenceStats>;
  /** The last delivered position of an exact topic subscribed to. */
  position(topic: string): Position | undefined;
  /** The token for the next connection; on an open connection that has a token, also sent with `refresh` (a refusal is an `error` event). */
  setToken(token: string): void;
  /** Drops the connection (close code 4000) and reconnects with backoff; while waiting to reconnect, connects at once. */
  reconnect(): void;
  /** Closes the connection with 1000 for good. */
  close(): void;

  addEventListener<K extends keyof TidingsEventMap>(type: K, listener: TidingsListener<K>, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof TidingsEventMap>(type: K, listener: TidingsListener<K>, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** A listener of one of Tidings' events. */
export type TidingsListener<K extends keyof TidingsEventMap> = (this: Tidings, event: TidingsEventMap[K]) => void;

export default Tidings;
