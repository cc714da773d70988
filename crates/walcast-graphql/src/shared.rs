//! Event payloads built once per group of identical subscriptions.
//!
//! Subscriptions whose output cannot differ — same schema, document, operation name, variables,
//! root field, and same access (view shape, row filters after claims substitution) — form a
//! group. The first member that reaches an event resolves and serialises it; the others take the
//! same bytes. Each member keeps its own hub registration, so matching, replay, revocation and
//! slow-consumer handling stay per subscription; only the work after matching is shared.
//!
//! An entry lives until every member present when it was made has taken it, or until every
//! member has moved past its cursor (members that never receive it, or leave). It is never kept
//! for the retention window: a member that reaches an event whose entry is gone builds it again.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{
    AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};
use std::sync::{Arc, Mutex, Weak};

use rustc_hash::FxHashMap;
use tokio::sync::OnceCell;
use walcast_model::sync::lock;
use walcast_model::Cursor;

/// A serialised GraphQL response for one event: `{"data":…}` or `{"data":…,"errors":[…]}`.
pub type Payload = Arc<str>;

/// What an operation's subscriptions share by: its groups and the operation's key (schema,
/// document, operation name, variables). Set by the socket layer; absent, nothing is shared.
pub struct Sharing {
    pub groups: Arc<PayloadGroups>,
    pub operation: String,
}

/// Payloads made by an operation's subscription streams, taken by the socket layer with each
/// stream item (juniper's stream items are values, not serialised text).
#[derive(Default)]
pub struct Outbox(Mutex<VecDeque<Payload>>);

impl Outbox {
    pub fn push(&self, payload: Payload) {
        lock(&self.0).push_back(payload);
    }

    pub fn take(&self) -> Option<Payload> {
        lock(&self.0).pop_front()
    }
}

/// Entries a group may hold at once; past it the oldest go (a lagging member rebuilds them).
const MAX_ENTRIES: usize = 4096;
/// Entries kept before the first sweep for members that moved on.
const SWEEP_FLOOR: usize = 64;

/// Every group of the server, by key. Counts what was built and what was shared.
#[derive(Default)]
pub struct PayloadGroups {
    groups: Mutex<HashMap<Arc<str>, Weak<Group>>>,
    next_member: AtomicU64,
    /// Payloads resolved and serialised.
    pub built: AtomicU64,
    /// Payloads taken from another member of the group instead.
    pub shared: AtomicU64,
}

impl PayloadGroups {
    /// Groups alive now (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.groups)
            .values()
            .filter(|g| g.strong_count() > 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn join(self: &Arc<Self>, key: Arc<str>, access: Arc<str>) -> Membership {
        let id = self.next_member.fetch_add(1, Relaxed);
        let full: Arc<str> = format!("{key}\u{0}{access}").into();
        let taken = Arc::new(Taken::default());
        let group = {
            let mut groups = lock(&self.groups);
            let group = match groups.get(&full).and_then(Weak::upgrade) {
                Some(g) => g,
                None => {
                    let g = Arc::new(Group {
                        key: full.clone(),
                        state: Mutex::new(GroupState {
                            sweep_at: SWEEP_FLOOR,
                            ..GroupState::default()
                        }),
                    });
                    groups.insert(full, Arc::downgrade(&g));
                    g
                }
            };
            lock(&group.state).members.insert(id, taken.clone());
            group
        };
        Membership {
            groups: self.clone(),
            group,
            access,
            id,
            taken,
        }
    }
}

struct Entry {
    /// Pins the event's allocation, so its address identifies it for as long as the entry lives.
    _event: Weak<dyn std::any::Any + Send + Sync>,
    cursor: Cursor,
    cell: OnceCell<Payload>,
    /// Members of the group when it was made.
    members: usize,
    /// Of those, the ones yet to take it: the last one removes it from the memo. Counted
    /// outside the group's lock, which each delivery then takes once.
    left: AtomicUsize,
    /// Where the entry, when it goes, counts the payloads taken from it without building.
    counts: Arc<PayloadGroups>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // One member built it; the others that took it shared it. Counted once per entry, not
        // per delivery: a counter shared by every delivery bounces between the cores.
        let taken = self.members - self.left.load(Relaxed).min(self.members);
        if self.cell.initialized() && taken > 1 {
            self.counts.shared.fetch_add(taken as u64 - 1, Relaxed);
        }
    }
}

/// The cursor of the last event a member took: its own, so taking an event does not touch the
/// group's member map; a sweep reads them all.
#[derive(Default)]
struct Taken(Mutex<Option<Cursor>>);

#[derive(Default)]
struct GroupState {
    members: FxHashMap<u64, Arc<Taken>>,
    /// Entries by event address.
    memo: FxHashMap<usize, Arc<Entry>>,
    /// Sweep when the memo grows past this.
    sweep_at: usize,
    /// Sweeps done, for tests: leaving must not walk the group.
    sweeps: u64,
}

impl GroupState {
    /// Drops the entries every member has moved past, then the oldest beyond the cap.
    fn sweep(&mut self) {
        self.sweeps += 1;
        // The lowest cursor taken, once every member took something (`None` otherwise).
        let passed = self
            .members
            .values()
            .map(|t| *lock(&t.0))
            .try_fold(None, |low: Option<Cursor>, taken| {
                taken.map(|c| Some(low.map_or(c, |l| l.min(c))))
            });
        if let Some(Some(passed)) = passed {
            self.memo.retain(|_, e| e.cursor > passed);
        }
        if self.members.len() < 2 {
            self.memo.clear();
        }
        if self.memo.len() > MAX_ENTRIES {
            let mut cursors: Vec<Cursor> = self.memo.values().map(|e| e.cursor).collect();
            cursors.sort_unstable();
            let cut = cursors[self.memo.len() - MAX_ENTRIES];
            self.memo.retain(|_, e| e.cursor >= cut);
        }
        self.sweep_at = (self.memo.len() * 2).max(SWEEP_FLOOR);
    }
}

struct Group {
    key: Arc<str>,
    state: Mutex<GroupState>,
}

struct Membership {
    groups: Arc<PayloadGroups>,
    group: Arc<Group>,
    /// The access key the group was joined with.
    access: Arc<str>,
    id: u64,
    taken: Arc<Taken>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let empty = {
            let mut st = lock(&self.group.state);
            st.members.remove(&self.id);
            // No sweep here: it walks every member, and a group of n members leaving at once
            // (a shutdown, a mass disconnect) would cost n² under this lock. What this member
            // held back goes at the next sweep `payload` triggers; alone, nothing is shared.
            if st.members.len() < 2 {
                st.memo.clear();
            }
            st.members.is_empty()
        };
        if empty {
            let mut groups = lock(&self.groups.groups);
            // Only this group's entry: a new group may already have taken the key.
            if groups
                .get(&self.group.key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.group)))
            {
                groups.remove(&self.group.key);
            }
        }
    }
}

/// One subscription's place in its group.
pub struct Member {
    groups: Arc<PayloadGroups>,
    /// Identifies the operation and root field; the access key completes the group's key.
    key: Arc<str>,
    /// Shared with the delivery under way, which holds it without the lock.
    current: Mutex<Arc<Membership>>,
}

impl Member {
    /// A member of the group of `key` and the access key `access`, joined at once: joining
    /// builds the group's full key and looks it up, work for the subscribing, not for the
    /// first event that reaches a hundred thousand subscriptions at once.
    pub fn new(groups: Arc<PayloadGroups>, key: String, access: &Arc<str>) -> Member {
        let key: Arc<str> = key.into();
        let current = Mutex::new(Arc::new(groups.join(key.clone(), access.clone())));
        Member {
            groups,
            key,
            current,
        }
    }

    /// The payload of event `ev` (at `cursor`) for a caller whose access key is `access`:
    /// `build`'s, or the one another member of the group built. A changed access key (a
    /// permissions reload, a new catalog) moves the member to the group of its new key first.
    pub async fn payload<E, F, Fut>(
        &self,
        ev: &Arc<E>,
        cursor: Cursor,
        access: &Arc<str>,
        build: F,
    ) -> Payload
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Payload>,
    {
        let m = {
            let mut current = lock(&self.current);
            // Another key is another group: the old membership leaving after the new one
            // joined counts nobody twice.
            if !Arc::ptr_eq(&current.access, access) && *current.access != **access {
                *current = Arc::new(self.groups.join(self.key.clone(), access.clone()));
            }
            current.clone()
        };
        let address = Arc::as_ptr(ev) as usize;
        let entry = {
            let mut st = lock(&m.group.state);
            if st.members.len() < 2 {
                None
            } else {
                let members = st.members.len();
                let entry = st
                    .memo
                    .entry(address)
                    .or_insert_with(|| {
                        let event: Weak<dyn std::any::Any + Send + Sync> =
                            Arc::downgrade(ev) as Weak<E>;
                        Arc::new(Entry {
                            _event: event,
                            cursor,
                            cell: OnceCell::new(),
                            members,
                            left: AtomicUsize::new(members),
                            counts: self.groups.clone(),
                        })
                    })
                    .clone();
                if st.memo.len() > st.sweep_at {
                    st.sweep();
                }
                Some(entry)
            }
        };
        let payload = match &entry {
            None => {
                self.groups.built.fetch_add(1, Relaxed);
                build().await
            }
            Some(entry) => {
                let mut built = false;
                let payload = entry
                    .cell
                    .get_or_init(|| {
                        built = true;
                        build()
                    })
                    .await
                    .clone();
                if built {
                    self.groups.built.fetch_add(1, Relaxed);
                }
                payload
            }
        };
        {
            let mut last = lock(&m.taken.0);
            *last = Some(last.map_or(cursor, |c| c.max(cursor)));
        }
        if let Some(entry) = entry {
            // Members that joined after the entry was made take it without counting down.
            let was = entry
                .left
                .fetch_update(AcqRel, Acquire, |n| n.checked_sub(1));
            if was == Ok(1) {
                let mut st = lock(&m.group.state);
                if st
                    .memo
                    .get(&address)
                    .is_some_and(|held| Arc::ptr_eq(held, &entry))
                {
                    st.memo.remove(&address);
                }
            }
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Stands for an event: its identity is its address, its position the cursor.
    struct Ev(Cursor);

    fn event(seq: u32) -> Arc<Ev> {
        let cursor = Cursor::decode(&format!("{:016X}{seq:08X}", 1)).expect("cursor");
        Arc::new(Ev(cursor))
    }

    async fn take(m: &Member, ev: &Arc<Ev>, access: &Arc<str>, calls: &AtomicUsize) -> Payload {
        m.payload(ev, ev.0, access, || async {
            calls.fetch_add(1, Relaxed);
            Payload::from(format!("p{}", ev.0.seq))
        })
        .await
    }

    fn entries(g: &PayloadGroups) -> usize {
        lock(&g.groups)
            .values()
            .filter_map(Weak::upgrade)
            .map(|g| lock(&g.state).memo.len())
            .sum()
    }

    #[tokio::test]
    async fn identical_members_build_once_and_release_at_once() {
        let groups = Arc::new(PayloadGroups::default());
        let access: Arc<str> = "a".into();
        let members: Vec<Member> = (0..3)
            .map(|_| Member::new(groups.clone(), "op".into(), &access))
            .collect();
        let calls = AtomicUsize::new(0);
        // Joining happens on the first event; put all three in the group first.
        let warm = event(0);
        for m in &members {
            take(m, &warm, &access, &calls).await;
        }
        calls.store(0, Relaxed);
        for seq in 1..=5 {
            let ev = event(seq);
            for m in &members {
                assert_eq!(&*take(m, &ev, &access, &calls).await, format!("p{seq}"));
            }
        }
        assert_eq!(calls.load(Relaxed), 5, "one build per event");
        assert_eq!(
            entries(&groups),
            0,
            "nothing held once every member took it"
        );
        drop(members);
        assert!(groups.is_empty());
    }

    #[tokio::test]
    async fn other_access_builds_its_own_and_lagging_entries_are_swept() {
        let groups = Arc::new(PayloadGroups::default());
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let one = Member::new(groups.clone(), "op".into(), &a);
        let two = Member::new(groups.clone(), "op".into(), &b);
        let calls = AtomicUsize::new(0);
        let ev = event(1);
        take(&one, &ev, &a, &calls).await;
        take(&two, &ev, &b, &calls).await;
        assert_eq!(
            calls.load(Relaxed),
            2,
            "different access, different payloads"
        );
        assert_eq!(groups.len(), 2);
        // `three` joins a's group; `one` moves on without `three` ever taking event 2.
        let three = Member::new(groups.clone(), "op".into(), &a);
        take(&three, &ev, &a, &calls).await;
        let ev2 = event(2);
        take(&one, &ev2, &a, &calls).await;
        // Event 1 (`three` joined after `one` took it) and event 2 wait for their other member.
        assert_eq!(entries(&groups), 2);
        let ev3 = event(3);
        take(&three, &ev3, &a, &calls).await;
        take(&one, &ev3, &a, &calls).await;
        drop(three);
        assert_eq!(
            entries(&groups),
            0,
            "a member leaving releases what it held back"
        );
        // A reload changes `one`'s access: it joins b's group.
        take(&one, &event(4), &b, &calls).await;
        assert_eq!(groups.len(), 1);
    }

    #[tokio::test]
    async fn leaving_a_large_group_does_not_walk_it() {
        const MEMBERS: usize = 100_000;
        let groups = Arc::new(PayloadGroups::default());
        let access: Arc<str> = "a".into();
        let members: Vec<Member> = (0..MEMBERS)
            .map(|_| Member::new(groups.clone(), "op".into(), &access))
            .collect();
        let calls = AtomicUsize::new(0);
        let ev = event(1);
        for m in &members {
            take(m, &ev, &access, &calls).await;
        }
        let group = lock(&groups.groups)
            .values()
            .find_map(Weak::upgrade)
            .expect("the group");
        let before = lock(&group.state).sweeps;
        drop(members);
        assert!(groups.is_empty());
        let st = lock(&group.state);
        assert!(st.members.is_empty() && st.memo.is_empty());
        assert_eq!(st.sweeps, before, "leaving swept the group");
    }
}
