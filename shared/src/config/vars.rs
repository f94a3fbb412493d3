//! The variables' names and their defaults: the table `docs/configuration.md` documents.

use std::time::Duration;

/// Redis URL (`redis://`, `rediss://` for TLS, `unix://`). When set, [`REDIS_URL_SECRET_ARN`] is ignored.
pub const REDIS_URL: &str = "REDIS_URL";
/// ARN of an AWS Secrets Manager secret whose SecretString is the whole Redis URL (for a URL with a password). Read
/// once at cold start, with the function's role, when [`REDIS_URL`] is unset.
pub const REDIS_URL_SECRET_ARN: &str = "REDIS_URL_SECRET_ARN";
/// `true` (also `1`, `yes`) to talk to Redis with the Redis Cluster client: required by ElastiCache Serverless and
/// any cluster-mode endpoint (default `false`: one node, or a cluster-mode-disabled primary endpoint).
pub const REDIS_CLUSTER: &str = "REDIS_CLUSTER";
/// ARN of a Secrets Manager secret holding the Redis user, `{"username": …, "password": …}`, put into the URL
/// read from [`REDIS_URL`] or [`REDIS_URL_SECRET_ARN`] at cold start: how the stack's ElastiCache user, whose
/// generated password lives in a secret, reaches the functions. Unset: the URL's own credentials, if any.
pub const REDIS_AUTH_SECRET_ARN: &str = "REDIS_AUTH_SECRET_ARN";
/// `true` (also `1`, `yes`) to accept a `redis://` URL without TLS from [`REDIS_URL_SECRET_ARN`], for a Redis
/// on a private network (default `false`: a URL read from a secret is a deployed one, and the password in it
/// would cross the network in the clear). [`REDIS_URL`] itself is taken as it is: it is how local runs are told.
pub const REDIS_ALLOW_PLAINTEXT: &str = "REDIS_ALLOW_PLAINTEXT";
/// Path of a PEM file holding the CA certificate(s) that `rediss://` trusts instead of the system's roots, for a
/// Redis whose certificate comes from a private CA (default: the system roots, which ElastiCache's and hosted
/// Redis services' certificates chain to). Verification is never turned off.
pub const REDIS_CA_CERT_PATH: &str = "REDIS_CA_CERT_PATH";
/// A PEM file of CAs the HTTPS clients (the Management API, Lambda's Invoke API, Secrets Manager, the issuer's
/// keys) trust besides the system's, as the AWS CLI and SDKs read it: an emulator serving TLS with a local CA
/// (`wschat-emulator --tls`), or a proxy. Unset on AWS.
pub const AWS_CA_BUNDLE: &str = "AWS_CA_BUNDLE";
/// Prefix of every Redis key (default [`DEFAULT_KEY_PREFIX`]); it may not contain `{` or `}`.
pub const REDIS_KEY_PREFIX: &str = "REDIS_KEY_PREFIX";
/// Seconds a membership lasts without `$disconnect` (default [`MAX_CONNECTION_LIFETIME`], API Gateway's cap).
pub const MEMBERSHIP_TTL_SECS: &str = "MEMBERSHIP_TTL_SECS";
/// Comma-separated list of allowed `Origin`s for browsers, or `*` (default `*`).
pub const ALLOWED_ORIGINS: &str = "ALLOWED_ORIGINS";
/// The stage URL the Management API is reached at (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`).
pub const WS_MANAGEMENT_ENDPOINT: &str = "WS_MANAGEMENT_ENDPOINT";
/// Posts in flight at once during fan-out (default [`DEFAULT_FANOUT_MAX_IN_FLIGHT`]).
pub const FANOUT_MAX_IN_FLIGHT: &str = "FANOUT_MAX_IN_FLIGHT";
/// Attempts per member when throttled (default [`DEFAULT_FANOUT_MAX_ATTEMPTS`]).
pub const FANOUT_MAX_ATTEMPTS: &str = "FANOUT_MAX_ATTEMPTS";
/// The function `ws-default` hands the shards of a big room's fan-out to, asynchronously (`ws-fanout`'s name or
/// ARN). Unset: one invocation posts to every member, however many.
pub const FANOUT_FUNCTION: &str = "FANOUT_FUNCTION";
/// Members one invocation posts to, with [`FANOUT_FUNCTION`] (default [`DEFAULT_FANOUT_SHARD_SIZE`], at most
/// [`MAX_FANOUT_SHARD_SIZE`]: a shard's event must stay under Lambda's 256 KB asynchronous limit).
pub const FANOUT_SHARD_SIZE: &str = "FANOUT_SHARD_SIZE";
/// [`FANOUT_SHARD_SIZE`]'s default.
pub const DEFAULT_FANOUT_SHARD_SIZE: usize = 1000;
/// [`FANOUT_SHARD_SIZE`]'s largest value.
pub const MAX_FANOUT_SHARD_SIZE: usize = 4000;

/// How many messages of each room's history are kept (default [`DEFAULT_HISTORY_MAX_MESSAGES`]).
pub const HISTORY_MAX_MESSAGES: &str = "HISTORY_MAX_MESSAGES";
/// Seconds a room's history is kept after its last message (default 86400, a day).
pub const HISTORY_TTL_SECS: &str = "HISTORY_TTL_SECS";

/// Live members a room may have; `$connect` into a full room is refused with 403 (default 1000).
pub const MAX_ROOM_MEMBERS: &str = "MAX_ROOM_MEMBERS";
/// Chat messages one connection may send per second, sustained (default 5).
pub const RATE_LIMIT_PER_SEC: &str = "RATE_LIMIT_PER_SEC";
/// Chat messages one connection may send at once after a quiet spell (default 20).
pub const RATE_LIMIT_BURST: &str = "RATE_LIMIT_BURST";
/// History, presence and ping requests, and refused frames, one connection may send per second, sustained
/// (default 2): every frame a client sends costs something, not only chat.
pub const FRAME_RATE_PER_SEC: &str = "FRAME_RATE_PER_SEC";
/// The same, at once after a quiet spell (default 20); a connection that goes on sending this many more frames
/// while refused is closed.
pub const FRAME_BURST: &str = "FRAME_BURST";
/// UTF-8 bytes a chat message's text may have (default 8192, at most 16384).
pub const MAX_MESSAGE_BYTES: &str = "MAX_MESSAGE_BYTES";
/// Bytes of chat frames one history answer carries at most (default 32000, at most 65536); the last frame of a
/// longer answer says `"more": true`.
pub const HISTORY_PAGE_BYTES: &str = "HISTORY_PAGE_BYTES";
/// Bytes of chat frames each room's history keeps at most, besides [`HISTORY_MAX_MESSAGES`] (default 524288).
pub const HISTORY_MAX_BYTES: &str = "HISTORY_MAX_BYTES";
/// Handshakes one source address may make per minute (default 120, also the burst).
pub const CONNECT_RATE_PER_IP: &str = "CONNECT_RATE_PER_IP";
/// Live connections one source address may hold (default 200).
pub const MAX_CONNECTIONS_PER_IP: &str = "MAX_CONNECTIONS_PER_IP";
/// Seconds after connecting during which a 410 Gone does not prune a member: API Gateway answers 410 to posts
/// made between `$connect` returning and the connection being open (default 5).
pub const PRUNE_GRACE_SECS: &str = "PRUNE_GRACE_SECS";

/// API Gateway closes every WebSocket connection after 2 hours: no membership needs to outlive that. The one
/// place the 2 hours are written down.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// The key prefix used when [`REDIS_KEY_PREFIX`] is unset.
pub const DEFAULT_KEY_PREFIX: &str = "wschat:";
/// [`HISTORY_MAX_MESSAGES`]'s default: what a page shows when it opens a room.
pub const DEFAULT_HISTORY_MAX_MESSAGES: usize = 100;
/// [`HISTORY_TTL_SECS`]'s default.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The most [`HISTORY_MAX_MESSAGES`] may be: a history request answers with all of it at once.
pub const MAX_HISTORY_MAX_MESSAGES: usize = 10_000;
/// [`MAX_ROOM_MEMBERS`]'s default: one message to a full room is a tenth of the account's 10,000 Management API
/// requests a second, so ten such rooms may each send a message a second (docs/benchmark.md, "Big rooms").
pub const DEFAULT_MAX_ROOM_MEMBERS: usize = 1000;
/// The most [`MAX_ROOM_MEMBERS`] may be: one message to a room of 10,000 is the account's whole Management API
/// quota for a second, and reaches them all in about 0.4 s with shards of 1,000 (docs/benchmark.md, "Big rooms").
pub const MAX_MAX_ROOM_MEMBERS: usize = 10_000;
/// [`RATE_LIMIT_PER_SEC`]'s default: more than anyone types, less than a script floods.
pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 5;
/// [`RATE_LIMIT_BURST`]'s default.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 20;
/// [`PRUNE_GRACE_SECS`]'s default.
pub const DEFAULT_PRUNE_GRACE: Duration = Duration::from_secs(5);
/// [`FANOUT_MAX_IN_FLIGHT`]'s default.
pub const DEFAULT_FANOUT_MAX_IN_FLIGHT: usize = 64;
/// [`FANOUT_MAX_ATTEMPTS`]'s default.
pub const DEFAULT_FANOUT_MAX_ATTEMPTS: u32 = 4;
/// [`FRAME_RATE_PER_SEC`]'s default: a page asks history and presence once per connection and pings every 4
/// minutes; a second's worth of a script's loop is refused.
pub const DEFAULT_FRAME_RATE_PER_SEC: u32 = 2;
/// [`FRAME_BURST`]'s default: room for a reconnecting page to page through a whole history at once.
pub const DEFAULT_FRAME_BURST: u32 = 20;
/// [`MAX_MESSAGE_BYTES`]'s default: 2,000 characters of any script (4 bytes at most each), Discord's limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// The most [`MAX_MESSAGE_BYTES`] may be.
pub const MAX_MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// [`HISTORY_PAGE_BYTES`]'s default: an answer of one frame, one billed message (32 KB with its envelope),
/// unless a single message is larger.
pub const DEFAULT_HISTORY_PAGE_BYTES: usize = 32_000;
/// The most [`HISTORY_PAGE_BYTES`] may be: an answer of at most 64 KB, in frames of at most 32 KB, is at most 4
/// billed messages.
pub const MAX_HISTORY_PAGE_BYTES: usize = 64 * 1024;
/// [`HISTORY_MAX_BYTES`]'s default: with the keys around it, a room stays under 1 MB of Redis however it is used.
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 512 * 1024;
/// The most [`HISTORY_MAX_BYTES`] may be.
pub const MAX_HISTORY_MAX_BYTES: usize = 16 * 1024 * 1024;
/// [`CONNECT_RATE_PER_IP`]'s default: a whole office behind one NAT reconnecting after a network blip (pages
/// spread their retries over up to 10 s), not a script opening 50 a second.
pub const DEFAULT_CONNECT_RATE_PER_IP: u32 = 120;
/// [`MAX_CONNECTIONS_PER_IP`]'s default: a school or a conference behind one NAT, a few tabs each.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 200;

/// The CloudWatch namespace of the functions' Embedded Metric Format lines (default `wschat`; the template sets
/// `wschat/<stack>`, so two stacks in one account keep their numbers apart).
pub const METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";
/// The namespace when [`METRICS_NAMESPACE`] is unset.
pub const DEFAULT_METRICS_NAMESPACE: &str = "wschat";
