//! A Prometheus target's labels and how they meet the labels a target exposes, as Prometheus 2.42 does with
//! `honor_labels: false`, its default (`mutateSampleLabels` and `resolveConflictingExposedLabels` in
//! prometheus/prometheus `scrape/scrape.go`).
//!
//! The target labels are the producer's registered labels, plus `instance` (the `host:port` scraped) and `job`
//! (the producer's id) unless the registered labels set them. Target labels win: an exposed label of the same name
//! with a non-empty value is kept as `exported_<name>`, with `exported_` prepended again until the name is free
//! (`{instance="a", exported_instance="b"}` under `instance="x"` becomes `instance="x"`,
//! `exported_instance="b"`, `exported_exported_instance="a"`). Exposed labels with empty values are dropped, as
//! Prometheus's label builder drops them.

use std::collections::BTreeMap;

use roster::domain::Target;

/// The labels of one target, and the series labels they make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetLabels {
    labels: BTreeMap<String, String>,
}

impl TargetLabels {
    /// The target labels of `target`.
    pub(crate) fn new(target: &Target) -> Self {
        let mut labels = target.labels.as_map().clone();
        labels.entry("instance".to_owned()).or_insert_with(|| target.address.as_str().to_owned());
        labels.entry("job".to_owned()).or_insert_with(|| target.id.to_string());
        labels.retain(|_, value| !value.is_empty());
        Self { labels }
    }

    /// The target labels alone (those of the report series: `up` and the others).
    pub(crate) fn as_map(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The labels of a series exposed with `exposed` (names unique, without `__name__`).
    pub(crate) fn apply(&self, mut exposed: BTreeMap<String, String>) -> BTreeMap<String, String> {
        exposed.retain(|_, value| !value.is_empty());
        let mut conflicts = Vec::new();
        for (name, value) in &self.labels {
            if let Some(theirs) = exposed.insert(name.clone(), value.clone()) {
                conflicts.push((name.clone(), theirs));
            }
        }
        if conflicts.is_empty() {
            return exposed;
        }
        // Shortest name first, as Prometheus renames them (a stable sort of names given in order).
        conflicts.sort_by_key(|(name, _)| name.len());
        for (name, value) in conflicts {
            let mut renamed = format!("exported_{name}");
            // Bounded: each round makes a name longer than every name in the map after a finite number of rounds.
            while exposed.contains_key(&renamed) {
                renamed.insert_str(0, "exported_");
            }
            exposed.insert(renamed, value);
        }
        exposed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(labels: &[(&str, &str)]) -> Target {
        super::super::tests::target("node-1:9100", labels)
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn instance_is_the_address_and_job_the_producer_unless_the_labels_set_them() {
        let plain = target(&[("env", "prod")]);
        let labels = TargetLabels::new(&plain);
        assert_eq!(
            labels.as_map(),
            &map(&[("env", "prod"), ("instance", "node-1:9100"), ("job", &plain.id.to_string())])
        );
        let named = TargetLabels::new(&target(&[("job", "node"), ("instance", "db-1")]));
        assert_eq!(named.as_map(), &map(&[("instance", "db-1"), ("job", "node")]));
    }

    #[test]
    fn conflicting_exposed_labels_are_kept_as_exported_names_as_prometheus_does() {
        let labels = TargetLabels::new(&target(&[("job", "node")]));
        // The example of resolveConflictingExposedLabels.
        assert_eq!(
            labels.apply(map(&[("instance", "a"), ("exported_instance", "b"), ("cpu", "0")])),
            map(&[
                ("cpu", "0"),
                ("exported_exported_instance", "a"),
                ("exported_instance", "b"),
                ("instance", "node-1:9100"),
                ("job", "node"),
            ])
        );
        // An empty exposed value is no conflict, and is dropped.
        assert_eq!(
            labels.apply(map(&[("job", ""), ("mode", "")])),
            map(&[("instance", "node-1:9100"), ("job", "node")])
        );
        // Shortest name first: `job` takes `exported_job`, and `instance` cannot collide with it.
        assert_eq!(
            labels.apply(map(&[("job", "j"), ("instance", "i"), ("exported_job", "e")])),
            map(&[
                ("exported_exported_job", "j"),
                ("exported_instance", "i"),
                ("exported_job", "e"),
                ("instance", "node-1:9100"),
                ("job", "node"),
            ])
        );
    }
}
