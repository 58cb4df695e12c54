//! The ApplySet parent's bookkeeping during a run: the kinds and namespaces recorded before
//! the first object of a new kind is created, and the inventory written at the end.

use super::super::applyset::{self, Inventory, ParentContent, Record};
use super::{Engine, Mode};
use crate::cluster::error::Error;

impl Engine<'_> {
    /// Before the first object of a kind the parent does not list is created, add the kind
    /// (and namespace) to the parent, as `kubectl apply --applyset` does.
    pub(super) async fn record_kinds_before_creating(&mut self) -> Result<(), Error> {
        if self.parent_ready || self.request.mode == Mode::DryRun {
            return Ok(());
        }
        self.parent_ready = true;
        let mut content = self.content(self.parent.inventory.clone());
        content
            .group_kinds
            .extend(self.parent.group_kinds.iter().cloned());
        content
            .namespaces
            .extend(self.parent.namespaces.iter().cloned());
        let covered = self.parent.exists
            && content.group_kinds.is_subset(&self.parent.group_kinds)
            && content.namespaces.is_subset(&self.parent.namespaces);
        if covered {
            return Ok(());
        }
        content.annotations = self
            .parent
            .annotations
            .iter()
            .filter(|(k, _)| self.request.parent_annotations.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        applyset::write_parent(self.client, self.request.ownership, &content).await?;
        self.parent.exists = true;
        self.parent.group_kinds = content.group_kinds;
        self.parent.namespaces = content.namespaces;
        Ok(())
    }

    fn content(&self, inventory: Inventory) -> ParentContent {
        let own = &self.request.ownership.namespace;
        ParentContent {
            group_kinds: self
                .desired
                .iter()
                .map(|d| d.resolved.group_kind())
                .collect(),
            namespaces: self
                .desired
                .iter()
                .filter_map(|d| d.id.namespace.clone())
                .filter(|ns| ns != own)
                .collect(),
            inventory,
            annotations: self.request.parent_annotations.clone(),
        }
    }

    /// The final write: the new inventory, and only the bundle's kinds (unless pruning is off,
    /// in which case members of other kinds may remain).
    pub(super) async fn write_inventory(&mut self) -> Result<(), Error> {
        if self.request.mode == Mode::DryRun {
            return Ok(());
        }
        let objects: Vec<Record> = self.records.values().cloned().collect();
        let mut content = self.content(Inventory { objects });
        if !self.request.prune {
            content
                .group_kinds
                .extend(self.parent.group_kinds.iter().cloned());
            content
                .namespaces
                .extend(self.parent.namespaces.iter().cloned());
        }
        if content.matches(&self.parent) {
            return Ok(());
        }
        applyset::write_parent(self.client, self.request.ownership, &content).await
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use http::Method;

    use crate::cluster::apply::apply;
    use crate::cluster::applyset::{GROUP_KINDS_ANNOTATION, Inventory};
    use crate::cluster::fake::{self, Fake, NAMESPACE, object, objects, positions};
    use crate::cluster::{Action, Mode, NoopReporter};

    /// The inventory stored in the fake's parent Secret.
    fn stored_inventory(fake: &Fake) -> Inventory {
        let parent = fake
            .get("secrets", Some(NAMESPACE), "ferry-demo")
            .expect("the parent exists");
        let data = parent["data"][crate::cluster::applyset::INVENTORY_KEY]
            .as_str()
            .unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut json)
            .unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    #[tokio::test]
    async fn the_parent_records_the_kinds_before_the_first_config_map_is_created() {
        let fake = Fake::new();
        let mut bundle = objects("ConfigMap", "config", 3);
        bundle.push(object("Deployment", None, "web"));
        fake.apply(&bundle, Mode::Apply).await.unwrap();

        let requests = fake.requests();
        let parent_writes = positions(&requests, |r| {
            r.is_write() && r.is(&Method::PATCH, "secrets", Some("ferry-demo"))
        });
        let config_writes = positions(&requests, |r| {
            r.is_write() && r.is(&Method::PATCH, "configmaps", None)
        });
        assert_eq!(config_writes.len(), 3);
        let first_parent = *parent_writes.first().expect("the parent was written");
        assert!(
            first_parent < config_writes[0],
            "parent written at {parent_writes:?}, config maps at {config_writes:?}"
        );
        let recorded = requests[first_parent].body.as_ref().unwrap();
        let kinds = recorded["metadata"]["annotations"][GROUP_KINDS_ANNOTATION]
            .as_str()
            .unwrap();
        assert_eq!(kinds, "ConfigMap,Deployment.apps");
    }

    #[tokio::test]
    async fn the_final_inventory_lists_every_object_with_its_uid() {
        let fake = Fake::new();
        let mut bundle = objects("ConfigMap", "config", 2);
        bundle.push(object("Service", None, "web"));
        bundle.push(object("Deployment", None, "web"));
        fake.apply(&bundle, Mode::Apply).await.unwrap();

        let inventory = stored_inventory(&fake);
        let listed: Vec<(String, String, String)> = inventory
            .objects
            .iter()
            .map(|r| (r.kind.clone(), r.name.clone(), r.uid.clone()))
            .collect();
        let mut expected: Vec<(String, String, String)> = [
            ("ConfigMap", "configmaps", "config-0"),
            ("ConfigMap", "configmaps", "config-1"),
            ("Deployment", "deployments", "web"),
            ("Service", "services", "web"),
        ]
        .iter()
        .map(|(kind, resource, name)| {
            let live = fake.get(resource, Some(NAMESPACE), name).unwrap();
            let uid = live["metadata"]["uid"].as_str().unwrap().to_string();
            (kind.to_string(), name.to_string(), uid)
        })
        .collect();
        expected.sort();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        assert_eq!(listed_sorted, expected);
        assert!(inventory.objects.iter().all(|r| !r.digest.is_empty()));
    }

    #[tokio::test]
    async fn an_unchanged_reapply_writes_nothing() {
        let fake = Fake::new();
        let mut bundle = objects("ConfigMap", "config", 3);
        bundle.push(object("Deployment", None, "web"));
        let ownership = fake::ownership();
        let request = fake::request(&bundle, &ownership, Mode::Apply);
        let client = fake.client();
        apply(&client, &request, &NoopReporter).await.unwrap();
        fake.clear_requests();

        let report = apply(&client, &request, &NoopReporter).await.unwrap();
        let requests = fake.requests();
        let sent: Vec<String> = requests
            .iter()
            .filter(|r| r.method != Method::GET)
            .map(|r| format!("{} {} {:?}", r.method, r.path, r.query))
            .collect();
        assert!(sent.is_empty(), "sent {sent:#?}");
        assert_eq!(report.changes(), 0);
        assert_eq!(report.objects.len(), 4);
        assert!(report.objects.iter().all(|o| o.action == Action::Unchanged));
    }
}
