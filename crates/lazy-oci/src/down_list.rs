//! Which of several equivalent servers (mirrors, proxies) failed lately:
//! each one that failed is left out for a back-off, then tried again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Servers that failed, by name, until when they are passed over.
#[derive(Debug)]
pub struct DownList {
    backoff: Duration,
    down_until: Mutex<HashMap<String, Instant>>,
}

impl DownList {
    /// An empty list; a failed server is left out for `backoff`.
    pub fn new(backoff: Duration) -> Self {
        Self {
            backoff,
            down_until: Mutex::new(HashMap::new()),
        }
    }

    /// The back-off.
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// Until when `name` is passed over, if it is.
    pub fn down_until(&self, name: &str) -> Option<Instant> {
        let mut down = self.down_until.lock().expect("down list lock");
        match down.get(name) {
            Some(until) if *until > Instant::now() => Some(*until),
            Some(_) => {
                down.remove(name);
                None
            }
            None => None,
        }
    }

    /// Passes over `name` for the back-off.
    pub fn mark_down(&self, name: &str) {
        self.down_until
            .lock()
            .expect("down list lock")
            .insert(name.to_owned(), Instant::now() + self.backoff);
    }

    /// `items` in the order to try them: those up as given, then those
    /// down, soonest back first.
    pub fn in_order<'a, T>(&self, items: &'a [T], name: impl Fn(&T) -> &str) -> Vec<&'a T> {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for item in items {
            match self.down_until(name(item)) {
                Some(until) => down.push((until, item)),
                None => up.push(item),
            }
        }
        down.sort_by_key(|(until, _)| *until);
        up.extend(down.into_iter().map(|(_, item)| item));
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_servers_go_last_until_their_backoff_ends() {
        let list = DownList::new(Duration::from_millis(200));
        let names = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(
            list.in_order(&names, |s| s),
            [&names[0], &names[1], &names[2]]
        );
        list.mark_down("a");
        std::thread::sleep(Duration::from_millis(20));
        list.mark_down("b");
        assert_eq!(
            list.in_order(&names, |s| s),
            [&names[2], &names[0], &names[1]]
        );
        assert!(list.down_until("a").is_some());
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(list.down_until("a"), None);
        assert_eq!(
            list.in_order(&names, |s| s),
            [&names[0], &names[1], &names[2]]
        );
    }
}
