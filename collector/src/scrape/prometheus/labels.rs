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

use std::borrow::Cow;

use roster::domain::Target;

use crate::sample::Labels;

/// The labels of one target, and the series labels they make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetLabels {
    labels: Labels,
}

impl TargetLabels {
    /// The target labels of `target`.
    pub(crate) fn new(target: &Target) -> Self {
        let mut labels = target.labels.to_map();
        labels.entry("instance".to_owned()).or_insert_with(|| target.address.as_str().to_owned());
        labels.entry("job".to_owned()).or_insert_with(|| target.id.to_string());
        labels.retain(|_, value| !value.is_empty());
        Self { labels: labels.into_iter().collect() }
    }

    /// The target labels alone (those of the report series: `up` and the others).
    pub(crate) fn as_labels(&self) -> &Labels {
        &self.labels
    }

    /// Into `out`, ordered by name: the labels of a series exposed with `exposed` (names unique, without
    /// `__name__`). Borrowed from both, but for the names made by renaming.
    pub(crate) fn apply<'a>(
        &'a self,
        exposed: &'a [(Cow<'a, str>, Cow<'a, str>)],
        out: &mut Vec<(Cow<'a, str>, &'a str)>,
    ) {
        out.clear();
        out.extend(exposed.iter().filter(|(_, value)| !value.is_empty()).map(|(n, v)| (Cow::Borrowed(&**n), &**v)));
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let position = |out: &[(Cow<'a, str>, &'a str)], name: &str| out.binary_search_by(|(n, _)| (**n).cmp(name));
        // Vec::new allocates nothing: conflicts are rare.
        let mut conflicts = Vec::new();
        for (name, value) in self.labels.iter() {
            match position(out, name) {
                Ok(at) => conflicts.push((name, std::mem::replace(&mut out[at].1, value))),
                Err(at) => out.insert(at, (Cow::Borrowed(name), value)),
            }
        }
        // Shortest name first, as Prometheus renames them (a stable sort of names given in order).
        conflicts.sort_by_key(|(name, _)| name.len());
        for (name, value) in conflicts {
            let mut renamed = format!("exported_{name}");
            // Bounded: each round makes a name longer than every name in the set after a finite number of rounds.
            loop {
                match position(out, &renamed) {
                    Ok(_) => renamed.insert_str(0, "exported_"),
                    Err(at) => {
                        out.insert(at, (Cow::Owned(renamed), value));
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(labels: &[(&str, &str)]) -> Target {
        super::super::tests::target("node-1:9100", labels)
    }

    fn map(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    /// `labels.apply` to `exposed`, as labels.
    fn applied(labels: &TargetLabels, exposed: &[(&str, &str)]) -> Labels {
        let exposed: Vec<(Cow<'_, str>, Cow<'_, str>)> = exposed.iter().map(|&(k, v)| (k.into(), v.into())).collect();
        let mut out = Vec::new();
        labels.apply(&exposed, &mut out);
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "ordered by name, each once: {out:?}");
        Labels::from_sorted(out.iter().map(|(k, v)| (&**k, *v)))
    }

    #[test]
    fn instance_is_the_address_and_job_the_producer_unless_the_labels_set_them() {
        let plain = target(&[("env", "prod")]);
        let labels = TargetLabels::new(&plain);
        assert_eq!(
            labels.as_labels(),
            &map(&[("env", "prod"), ("instance", "node-1:9100"), ("job", &plain.id.to_string())])
        );
        let named = TargetLabels::new(&target(&[("job", "node"), ("instance", "db-1")]));
        assert_eq!(named.as_labels(), &map(&[("instance", "db-1"), ("job", "node")]));
    }

    #[test]
    fn conflicting_exposed_labels_are_kept_as_exported_names_as_prometheus_does() {
        let labels = TargetLabels::new(&target(&[("job", "node")]));
        // The example of resolveConflictingExposedLabels.
        assert_eq!(
            applied(&labels, &[("instance", "a"), ("exported_instance", "b"), ("cpu", "0")]),
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
            applied(&labels, &[("job", ""), ("mode", "")]),
            map(&[("instance", "node-1:9100"), ("job", "node")])
        );
        // Shortest name first: `job` takes `exported_job`, and `instance` cannot collide with it.
        assert_eq!(
            applied(&labels, &[("job", "j"), ("instance", "i"), ("exported_job", "e")]),
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
