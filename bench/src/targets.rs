//! The implementations under test and the operations they run.

use std::fmt;
use std::str::FromStr;

use chrono::Utc;
use lucia_diesel::cache::{CacheOptions, CacheStats};
use lucia_diesel::{
    Adapter, Attributes, ConnectionSource, DatabaseSession, PgPool, PoolOptions, PoolerPool,
    PostgresAdapter, ReplicaStatus, ReplicatedPool, SessionId, SessionManager, SessionToken,
};
use serde_json::json;

use crate::raw::RawPool;
use crate::{Res, USERS};

/// The operations of session-bench v1, plus the manager's `validate_session`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Validate,
    Miss,
    Touch,
    List,
    Create,
    Delete,
    ValidateSession,
    /// `touch` to a later expiry (now + 30 days), as an extension writes:
    /// the cache scenario's writes only.
    Extend,
    /// Every session of one user deleted (two each, loaded before the
    /// run): the cache scenario's writes only.
    DeleteUser,
    /// An UPDATE of a user row by the application (raw SQL on every
    /// implementation: the crate has no such operation): the cache
    /// scenario's writes only.
    UpdateUser,
}

impl Op {
    /// Reads first, then writes: the writes leave dead rows and wake
    /// autovacuum, which would otherwise weigh on whichever reads follow
    /// (`validate_session` in particular, compared with raw `validate`).
    pub const ALL: [Op; 7] = [
        Op::Validate,
        Op::ValidateSession,
        Op::Miss,
        Op::List,
        Op::Touch,
        Op::Create,
        Op::Delete,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Validate => "validate",
            Op::Miss => "miss",
            Op::Touch => "touch",
            Op::List => "list",
            Op::Create => "create",
            Op::Delete => "delete",
            Op::ValidateSession => "validate_session",
            Op::Extend => "extend",
            Op::DeleteUser => "delete_user",
            Op::UpdateUser => "update_user",
        }
    }
}

impl FromStr for Op {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        (Op::ALL
            .into_iter()
            .chain([Op::Extend, Op::DeleteUser, Op::UpdateUser]))
        .find(|op| op.name() == s)
        .ok_or_else(|| format!("unknown op {s}"))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one run does: which operation, over how many loaded sessions, from
/// how many tasks, in which round (see `--rounds`).
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub op: Op,
    pub sessions: u64,
    pub c: usize,
    pub round: u32,
}

impl Job {
    /// Round 0 of `op`.
    pub fn new(op: Op, sessions: u64, c: usize) -> Self {
        Self {
            op,
            sessions,
            c,
            round: 0,
        }
    }
}

/// The id of loaded session `n`: 64 hex characters like a hashed-mode id,
/// the 8 hex digits of a bijective hash of `n` repeated 8 times, so that ids
/// differ from their first character. Computed on the stack, no allocation;
/// `data::SESSION_ID_SQL` computes the same in SQL.
pub struct LoadedId([u8; 64]);

impl LoadedId {
    pub fn new(n: u64) -> Self {
        let hash = n.wrapping_mul(2_654_435_761) as u32;
        let mut id = [0u8; 64];
        for (i, byte) in id.iter_mut().enumerate() {
            let nibble = (hash >> (28 - 4 * (i % 8))) & 0xf;
            *byte = b"0123456789abcdef"[nibble as usize];
        }
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// The expiry `extend` writes: later than any loaded session's.
fn extended() -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::days(30)
}

/// A small, fast PRNG for picking rows (not for tokens).
struct Pick(u64);

impl Pick {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// The loaded session that call `i` of `job` reads.
fn picked_session(job: Job, i: u64) -> LoadedId {
    LoadedId::new(Pick(i + 1).next(job.sessions))
}

fn picked_user(i: u64) -> String {
    user_id(Pick(i + 1).next(USERS))
}

pub fn user_id(n: u64) -> String {
    format!("user-{n}")
}

/// The id that `create` gives its session `i` and `delete` removes again:
/// unique per implementation, session count, concurrency and round (the
/// database is new in every bench process).
fn created_id(tag: &str, job: Job, i: u64) -> String {
    format!("{}{i}", created_prefix(tag, job))
}

/// The user whose sessions `delete_user` call `i` deletes (two of them,
/// loaded before the run).
fn deletable_user(tag: &str, job: Job, i: u64) -> String {
    format!("{}u{i}", created_prefix(tag, job))
}

/// [`created_id`] without the call number.
pub fn created_prefix(tag: &str, job: Job) -> String {
    format!("{tag}-{}-{}-{}-", job.sessions, job.c, job.round)
}

/// The floor: tokio-postgres with one prepared statement per operation.
pub struct Raw {
    db: RawPool,
    /// The stored ids of the manager's sessions (see `validate_session`).
    token_ids: Vec<String>,
}

impl Raw {
    async fn call(&self, job: Job, i: u64) {
        let db = &self.db;
        match job.op {
            Op::Validate => assert!(db.validate(picked_session(job, i).as_str()).await.unwrap()),
            // The floor for the manager's validation: raw validate of the
            // same sessions, run in the same rounds.
            Op::ValidateSession => {
                let id = &self.token_ids[(i % self.token_ids.len() as u64) as usize];
                assert!(db.validate(id).await.unwrap());
            }
            Op::Miss => assert!(!db.validate(&format!("miss-{i}")).await.unwrap()),
            Op::Touch => {
                db.touch(picked_session(job, i).as_str(), Utc::now())
                    .await
                    .unwrap();
            }
            Op::Extend => {
                db.touch(picked_session(job, i).as_str(), extended())
                    .await
                    .unwrap();
            }
            Op::List => {
                db.list(&picked_user(i)).await.unwrap();
            }
            Op::Create => {
                let (id, user) = (created_id("raw", job, i), user_id(i % USERS));
                db.create(&id, &user, Utc::now(), "se").await.unwrap();
            }
            // Every delete finds its row (loaded before the run).
            Op::Delete => assert_eq!(db.delete(&created_id("raw", job, i)).await.unwrap(), 1),
            Op::DeleteUser => {
                let user = deletable_user("raw", job, i);
                assert_eq!(db.delete_user(&user).await.unwrap(), 2);
            }
            Op::UpdateUser => assert_eq!(db.update_user(&picked_user(i)).await.unwrap(), 1),
        }
    }
}

/// Session attributes of the bench schema, typed (the raw client decodes
/// typed columns too).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionAttrs {
    country: Option<String>,
}

/// User attributes of the bench schema, typed.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct UserAttrs {
    #[allow(dead_code)]
    username: String,
}

/// The crate: an adapter and a session manager on the same pool.
pub struct Lucia<SA, UA, S = PgPool> {
    tag: &'static str,
    adapter: PostgresAdapter<S, String, SA, UA>,
    manager: SessionManager<PostgresAdapter<S, String, SA, UA>>,
    tokens: Vec<SessionToken>,
    attributes: fn() -> SA,
}

impl<SA, UA, S: ConnectionSource> Lucia<SA, UA, S>
where
    SA: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    UA: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn call(&self, job: Job, i: u64) {
        let a = &self.adapter;
        match job.op {
            Op::Validate => {
                let id = picked_session(job, i);
                assert!(
                    a.get_session_and_user(&SessionId::from(id.as_str()))
                        .await
                        .unwrap()
                        .is_some()
                );
            }
            Op::Miss => {
                let id = format!("miss-{i}");
                assert!(
                    a.get_session_and_user(&SessionId::from(id))
                        .await
                        .unwrap()
                        .is_none()
                );
            }
            Op::Touch => {
                let id = picked_session(job, i);
                a.update_session_expiration(&SessionId::from(id.as_str()), Utc::now())
                    .await
                    .unwrap();
            }
            Op::Extend => {
                let id = picked_session(job, i);
                a.update_session_expiration(&SessionId::from(id.as_str()), extended())
                    .await
                    .unwrap();
            }
            Op::List => {
                a.get_user_sessions(&picked_user(i)).await.unwrap();
            }
            Op::Create => a.set_session(&self.created(job, i)).await.unwrap(),
            Op::Delete => {
                let found = a.delete_session(&created_id(self.tag, job, i).into()).await;
                assert!(found.unwrap(), "every delete finds its row");
            }
            Op::DeleteUser => {
                let user = deletable_user(self.tag, job, i);
                assert_eq!(a.delete_user_sessions(&user).await.unwrap(), 2);
            }
            Op::UpdateUser => unreachable!("update_user runs on the raw client only"),
            Op::ValidateSession => {
                let token = self.tokens[(i % self.tokens.len() as u64) as usize].as_str();
                assert!(
                    self.manager
                        .validate_session(token)
                        .await
                        .unwrap()
                        .is_some()
                );
            }
        }
    }

    fn created(&self, job: Job, i: u64) -> DatabaseSession<String, SA> {
        DatabaseSession {
            id: created_id(self.tag, job, i).into(),
            user_id: user_id(i % USERS),
            expires_at: Utc::now(),
            created_at: Utc::now(),
            last_seen_at: Utc::now(),
            authenticated_at: Utc::now(),
            attributes: (self.attributes)(),
        }
    }
}

/// The typed manager the bench validates with.
pub type TypedManager = SessionManager<PostgresAdapter<PgPool, String, SessionAttrs, UserAttrs>>;

/// One implementation under test, dispatched without boxing each call.
pub enum Target {
    Raw(Raw),
    Typed(Lucia<SessionAttrs, UserAttrs>),
    Dynamic(Lucia<Attributes, Attributes>),
    Pooler(Lucia<SessionAttrs, UserAttrs, PoolerPool>),
    /// `lucia-diesel` whose manager has the validation cache (feature
    /// `cache`; the database needs the cache's triggers).
    Cached(Lucia<SessionAttrs, UserAttrs>),
    /// The primary at `url` and its standby, a pool of `POOL` each.
    Replicated(Lucia<SessionAttrs, UserAttrs, ReplicatedPool>),
}

impl Target {
    pub const NAMES: [&str; 6] = [
        "raw",
        "lucia-diesel",
        "lucia-diesel-dynamic",
        "lucia-diesel-pooler",
        "lucia-diesel-replicated",
        "lucia-diesel-cached",
    ];

    /// The implementation called `name` (one of [`Target::NAMES`]); `raw`
    /// opens its own connections to `url`, the pooler and the replicated
    /// pool theirs (the latter to `url` and `standby`), the others share
    /// `pool`.
    pub async fn new(
        name: &str,
        url: &str,
        standby: Option<&str>,
        pool: &PgPool,
        tokens: &[SessionToken],
    ) -> Res<Self> {
        let typed = || {
            PostgresAdapter::new(pool.clone())
                .with_session_attributes::<SessionAttrs>()
                .with_user_attributes::<UserAttrs>()
        };
        let dynamic = || PostgresAdapter::new(pool.clone());
        Ok(match name {
            "lucia-diesel-pooler" => {
                let pooler = PoolOptions::new()
                    .with_max_size(crate::POOL)
                    .build_pooler(url)
                    .await
                    .expect("pooler pool");
                let typed = || {
                    PostgresAdapter::new(pooler.clone())
                        .with_session_attributes::<SessionAttrs>()
                        .with_user_attributes::<UserAttrs>()
                };
                Target::Pooler(Lucia {
                    tag: "ldp",
                    adapter: typed(),
                    manager: SessionManager::new(typed()),
                    tokens: tokens.to_vec(),
                    attributes: || SessionAttrs {
                        country: Some("se".into()),
                    },
                })
            }
            "lucia-diesel-replicated" => {
                let standby = standby.ok_or("lucia-diesel-replicated needs a standby")?;
                let replicated = PoolOptions::new()
                    .with_max_size(crate::POOL)
                    .build_replicated(url, &[standby])
                    .await?;
                let typed = || {
                    PostgresAdapter::new(replicated.clone())
                        .with_session_attributes::<SessionAttrs>()
                        .with_user_attributes::<UserAttrs>()
                };
                Target::Replicated(Lucia {
                    tag: "ldr",
                    adapter: typed(),
                    manager: SessionManager::new(typed()),
                    tokens: tokens.to_vec(),
                    attributes: || SessionAttrs {
                        country: Some("se".into()),
                    },
                })
            }
            "raw" => {
                let manager = SessionManager::new(PostgresAdapter::new(pool.clone()));
                Target::Raw(Raw {
                    db: RawPool::connect(url, crate::POOL as usize).await?,
                    token_ids: tokens
                        .iter()
                        .map(|t| manager.session_id(t.as_str()).into_string())
                        .collect(),
                })
            }
            "lucia-diesel-cached" => Target::Cached(Lucia {
                tag: "ldc",
                adapter: typed(),
                manager: SessionManager::new(typed())
                    .with_cache(CacheOptions::new())
                    .await?,
                tokens: tokens.to_vec(),
                attributes: || SessionAttrs {
                    country: Some("se".into()),
                },
            }),
            "lucia-diesel" => Target::Typed(Lucia {
                tag: "ld",
                adapter: typed(),
                manager: SessionManager::new(typed()),
                tokens: tokens.to_vec(),
                attributes: || SessionAttrs {
                    country: Some("se".into()),
                },
            }),
            _ => Target::Dynamic(Lucia {
                tag: "ldd",
                adapter: dynamic(),
                manager: SessionManager::new(dynamic()),
                tokens: tokens.to_vec(),
                attributes: dynamic_attributes,
            }),
        })
    }

    /// The tag in the ids this implementation creates and deletes.
    pub fn tag(&self) -> &'static str {
        match self {
            Target::Raw(_) => "raw",
            Target::Typed(t) => t.tag,
            Target::Dynamic(t) => t.tag,
            Target::Pooler(t) => t.tag,
            Target::Replicated(t) => t.tag,
            Target::Cached(t) => t.tag,
        }
    }

    /// The manager with the cache, for the cached implementation.
    pub fn cached(&self) -> Option<&TypedManager> {
        match self {
            Target::Cached(t) => Some(&t.manager),
            _ => None,
        }
    }

    /// How many tokens `validate_session` cycles through.
    pub fn tokens(&self) -> usize {
        match self {
            Target::Raw(t) => t.token_ids.len(),
            Target::Typed(t) | Target::Cached(t) => t.tokens.len(),
            Target::Dynamic(t) => t.tokens.len(),
            Target::Pooler(t) => t.tokens.len(),
            Target::Replicated(t) => t.tokens.len(),
        }
    }

    /// What the cache has done so far (the cached implementation only).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cached()?.cache_stats()
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::Raw(_) => Self::NAMES[0],
            Target::Typed(_) => Self::NAMES[1],
            Target::Dynamic(_) => Self::NAMES[2],
            Target::Pooler(_) => Self::NAMES[3],
            Target::Replicated(_) => Self::NAMES[4],
            Target::Cached(_) => Self::NAMES[5],
        }
    }

    pub async fn call(&self, job: Job, i: u64) {
        match self {
            Target::Raw(t) => t.call(job, i).await,
            Target::Typed(t) => t.call(job, i).await,
            Target::Dynamic(t) => t.call(job, i).await,
            Target::Pooler(t) => t.call(job, i).await,
            Target::Cached(t) => t.call(job, i).await,
            Target::Replicated(t) => t.call(job, i).await,
        }
    }

    /// Waits until the implementation can be measured as itself: the
    /// replicated pool until its standby serves reads again (after a load,
    /// until it has replayed it), at most a minute.
    pub async fn settle(&self) {
        let Target::Replicated(t) = self else {
            return;
        };
        let pool = t.adapter.source();
        let start = std::time::Instant::now();
        while !matches!(pool.replica_status()[0], ReplicaStatus::Usable { .. }) {
            if start.elapsed().as_secs() >= 60 {
                eprintln!("the standby is not serving reads: {pool:?}");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

fn dynamic_attributes() -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert("country".into(), json!("se"));
    attributes
}
