//! Chain IDs: the names containerd gives the snapshot of a layer stack
//! (the OCI image spec's ChainID). `chain(0) = diff_id(0)`,
//! `chain(n) = sha256(chain(n-1) + " " + diff_id(n))`.

use sha2::{Digest, Sha256};

/// The chain ID of every prefix of `diff_ids`, bottom first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => {
                let hash = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
                format!("sha256:{}", hex::encode(hash))
            }
        };
        chains.push(next);
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_layers_as_the_image_spec_says() {
        let a = "sha256:a9561eb1b190625c9adb5a9513e72c4dedafc1cb2d4c5236c9a6957ec7dfd5a9";
        let b = "sha256:3b1d5cd9a2ff6f4bc2b2ffd6c8b5ce64ae1ac8d8a9a3db80c89bd65e9a83b31e";
        let chains = chain_ids(&[a.to_owned(), b.to_owned()]);
        assert_eq!(chains[0], a);
        // `printf '%s' "$a $b" | sha256sum`
        assert_eq!(
            chains[1],
            "sha256:34914b08507d6141d79e67be6180b7228cfa5fe9d1ddd8c29a47ae9373b1099e"
        );
    }

    #[test]
    fn empty_stack_has_no_chain() {
        assert!(chain_ids(&[]).is_empty());
    }
}
