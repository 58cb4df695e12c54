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
