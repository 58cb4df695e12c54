//! The Pod Security Standards "restricted" profile, one rule per control.
//!
//! The semantics follow `pod-security-admission/policy/check_*.go` at policy version v1.35
//! (what `latest` means on a 1.36 API server), so a bundle that passes here is admitted by a
//! namespace labelled `pod-security.kubernetes.io/enforce: restricted`. Restricted includes
//! Baseline; where Restricted overrides a Baseline check (capabilities, seccomp, volume types,
//! `/proc` mount) only the stricter check is implemented. Every container list is inspected:
//! `initContainers`, `containers` and `ephemeralContainers`.

use serde_json::Value;

use super::pod::{Pod, Which, dig, present, truthy};
use super::{Check, Family, Rule, Severity, Violation};

const fn rule(
    id: &'static str,
    summary: &'static str,
    check: fn(&Pod<'_>, &mut Vec<Violation>),
) -> Rule {
    Rule {
        id,
        family: Family::PodSecurity,
        severity: Severity::Error,
        summary,
        check: Check::Pod(check),
    }
}

/// `hostNetwork`, `hostPID` and `hostIPC` unset or false.
pub(super) const HOST_NAMESPACES: Rule = rule(
    "PSS-HOST-NAMESPACES",
    "pods must not share the host's network, PID or IPC namespace",
    host_namespaces,
);

/// `securityContext.privileged` unset or false.
pub(super) const PRIVILEGED: Rule = rule(
    "PSS-PRIVILEGED",
    "containers must not run privileged",
    privileged,
);

/// `capabilities.drop` includes `ALL`; `capabilities.add` at most `NET_BIND_SERVICE`.
pub(super) const CAPABILITIES: Rule = rule(
    "PSS-CAPABILITIES",
    "containers must drop ALL capabilities and may add only NET_BIND_SERVICE",
    capabilities,
);

/// No `hostPath` volumes.
pub(super) const HOST_PATH: Rule = rule(
    "PSS-HOST-PATH",
    "pods must not mount hostPath volumes",
    host_path,
);

/// `ports[].hostPort` unset or 0.
pub(super) const HOST_PORTS: Rule = rule(
    "PSS-HOST-PORTS",
    "containers must not bind host ports",
    host_ports,
);

/// `securityContext.procMount` unset or `Default`.
pub(super) const PROC_MOUNT: Rule = rule(
    "PSS-PROC-MOUNT",
    "containers must use the default /proc mount",
    proc_mount,
);

/// `seccompProfile.type` `RuntimeDefault` or `Localhost`, at pod level or on every container.
pub(super) const SECCOMP: Rule = rule(
    "PSS-SECCOMP",
    "pods must set seccompProfile RuntimeDefault or Localhost, at pod level or on every container",
    seccomp,
);

/// Only the safe sysctls.
pub(super) const SYSCTLS: Rule = rule(
    "PSS-SYSCTLS",
    "pods may set only the namespaced, isolated (safe) sysctls",
    sysctls,
);

/// SELinux type from the container set; no custom user or role.
pub(super) const SELINUX: Rule = rule(
    "PSS-SELINUX",
    "seLinuxOptions may set only a container type and never a user or role",
    selinux,
);

/// AppArmor profile (field or annotation) not unconfined.
pub(super) const APPARMOR: Rule = rule(
    "PSS-APPARMOR",
    "AppArmor profiles must be RuntimeDefault or Localhost, never unconfined",
    apparmor,
);

/// Only the restricted volume types.
pub(super) const VOLUME_TYPES: Rule = rule(
    "PSS-VOLUME-TYPES",
    "volumes must be configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected or secret",
    volume_types,
);

/// `allowPrivilegeEscalation` explicitly false on every container.
pub(super) const PRIV_ESC: Rule = rule(
    "PSS-PRIV-ESC",
    "every container must set allowPrivilegeEscalation: false",
    priv_esc,
);

/// `runAsNonRoot: true` at pod level or on every container; never false.
pub(super) const RUN_AS_NON_ROOT: Rule = rule(
    "PSS-RUN-AS-NON-ROOT",
    "pods must set runAsNonRoot: true, at pod level or on every container",
    run_as_non_root,
);

/// `runAsUser` never 0.
pub(super) const RUN_AS_USER: Rule = rule(
    "PSS-RUN-AS-USER",
    "pods and containers must not set runAsUser: 0",
    run_as_user,
);

/// No `host` on probes and lifecycle handlers (Baseline since policy v1.34).
pub(super) const HOST_PROBES: Rule = rule(
    "PSS-HOST-PROBES",
    "probes and lifecycle handlers must not target another host",
    host_probes,
);

/// `windowsOptions.hostProcess` unset or false.
pub(super) const HOST_PROCESS: Rule = rule(
    "PSS-HOST-PROCESS",
    "pods and containers must not run as Windows host processes",
    host_process,
);

/// Capabilities Restricted pods may add.
const ADDABLE_CAPABILITY: &str = "NET_BIND_SERVICE";

/// Seccomp and AppArmor profile types Restricted allows.
const CONFINED_PROFILES: [&str; 2] = ["RuntimeDefault", "Localhost"];

/// The safe sysctls (`check_sysctls.go`, policy v1.32 and later).
const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// SELinux types Baseline allows (`check_seLinuxOptions.go`, policy v1.31 and later).
const SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Volume sources Restricted allows (`check_restrictedVolumes.go`).
const VOLUME_SOURCES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The deprecated per-container AppArmor annotation, still enforced by Pod Security.
const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn host_namespaces(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    for (field, namespace) in [
        ("hostNetwork", "network"),
        ("hostPID", "process ID"),
        ("hostIPC", "IPC"),
    ] {
        if truthy(pod.spec.get(field)) {
            out.push(pod.violation(
                pod.at(field),
                format!("the pod shares the host's {namespace} namespace"),
                format!("remove {field} or set it to false"),
            ));
        }
    }
}

fn privileged(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    for c in pod.containers(Which::All) {
        if truthy(c.security(&["privileged"])) {
            out.push(pod.violation(
                c.at("securityContext.privileged"),
                format!("{} runs privileged", c.label()),
                "remove securityContext.privileged or set it to false".to_string(),
            ));
        }
    }
}

fn capabilities(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    if pod.is_windows() {
        return;
    }
    for c in pod.containers(Which::All) {
        let drops_all = c
            .security(&["capabilities", "drop"])
            .and_then(Value::as_array)
            .is_some_and(|drop| drop.iter().any(|cap| cap.as_str() == Some("ALL")));
        if !drops_all {
            out.push(pod.violation(
                c.at("securityContext.capabilities.drop"),
                format!("{} does not drop ALL capabilities", c.label()),
                "set securityContext.capabilities.drop: [\"ALL\"]".to_string(),
            ));
        }
        let added = c
            .security(&["capabilities", "add"])
            .and_then(Value::as_array);
        for (index, cap) in added.into_iter().flatten().enumerate() {
            if cap.as_str() != Some(ADDABLE_CAPABILITY) {
                let name = cap.as_str().map_or_else(|| cap.to_string(), str::to_string);
                out.push(pod.violation(
                    c.at(&format!("securityContext.capabilities.add[{index}]")),
                    format!("{} adds capability {name}", c.label()),
                    format!(
                        "remove {name} from securityContext.capabilities.add (only {ADDABLE_CAPABILITY} may be added)"
                    ),
                ));
            }
        }
    }
}

fn host_path(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    for (index, name, volume) in pod.volumes() {
        if present(volume.get("hostPath")).is_some() {
            out.push(pod.violation(
                pod.at(&format!("volumes[{index}].hostPath")),
                format!("volume \"{name}\" mounts a path of the host"),
                "replace the hostPath volume with an emptyDir, configMap, secret or persistentVolumeClaim".to_string(),
            ));
        }
    }
}

fn host_ports(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    for c in pod.containers(Which::All) {
        let ports = c.get(&["ports"]).and_then(Value::as_array);
        for (index, port) in ports.into_iter().flatten().enumerate() {
            let Some(host_port) = present(port.get("hostPort")) else {
                continue;
            };
            if host_port.as_i64() != Some(0) {
                out.push(pod.violation(
                    c.at(&format!("ports[{index}].hostPort")),
                    format!("{} binds host port {host_port}", c.label()),
                    "remove hostPort and expose the port through a Service".to_string(),
                ));
            }
        }
    }
}

fn proc_mount(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    for c in pod.containers(Which::All) {
        if let Some(mount) = c.security(&["procMount"])
            && mount.as_str() != Some("Default")
        {
            out.push(pod.violation(
                c.at("securityContext.procMount"),
                format!("{} sets procMount {mount}, which unmasks /proc", c.label()),
                "remove securityContext.procMount or set it to Default".to_string(),
            ));
        }
    }
}

fn seccomp(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    let confined = |profile: &Value| {
        profile
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| CONFINED_PROFILES.contains(&t))
    };
    let type_of = |profile: &Value| {
        profile
            .get("type")
            .map_or_else(|| "unset".to_string(), Value::to_string)
    };
    const FIX: &str = "set securityContext.seccompProfile.type: RuntimeDefault (or Localhost)";
    if pod.is_windows() {
        return;
    }
    let pod_profile = pod.security(&["seccompProfile"]);
    if let Some(profile) = pod_profile
        && !confined(profile)
    {
        out.push(pod.violation(
            pod.at("securityContext.seccompProfile.type"),
            format!("the pod sets seccomp profile type {}", type_of(profile)),
            FIX.to_string(),
        ));
    }
    for c in pod.containers(Which::All) {
        match c.security(&["seccompProfile"]) {
            Some(profile) if !confined(profile) => out.push(pod.violation(
                c.at("securityContext.seccompProfile.type"),
                format!(
                    "{} sets seccomp profile type {}",
                    c.label(),
                    type_of(profile)
                ),
                FIX.to_string(),
            )),
            Some(_) => {}
            // Unset on the container: fine when the pod sets a confined profile; when the
            // pod sets a bad one, fixing the pod fixes this container too.
            None if pod_profile.is_none() => out.push(pod.violation(
                c.at("securityContext.seccompProfile.type"),
                format!("neither the pod nor {} sets a seccomp profile", c.label()),
                format!("{FIX} in the pod's securityContext"),
            )),
            None => {}
        }
    }
}

fn sysctls(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    let sysctls = pod.security(&["sysctls"]).and_then(Value::as_array);
    for (index, sysctl) in sysctls.into_iter().flatten().enumerate() {
        let name = sysctl.get("name").and_then(Value::as_str).unwrap_or("");
        if !SAFE_SYSCTLS.contains(&name) {
            out.push(pod.violation(
                pod.at(&format!("securityContext.sysctls[{index}].name")),
                format!("the pod sets the unsafe sysctl \"{name}\""),
                "remove the sysctl; only namespaced, isolated sysctls are allowed".to_string(),
            ));
        }
    }
}

fn selinux(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    let at_pod = || {
        let path = pod.at("securityContext.seLinuxOptions");
        (path, "the pod".to_string())
    };
    selinux_options(pod, pod.security(&["seLinuxOptions"]), at_pod, out);
    for c in pod.containers(Which::All) {
        let at_container = || (c.at("securityContext.seLinuxOptions"), c.label());
        selinux_options(pod, c.security(&["seLinuxOptions"]), at_container, out);
    }
}

/// Checks one `seLinuxOptions` of `pod`; `whose` names its path and owner, and is called only
/// when there is something to report.
fn selinux_options(
    pod: &Pod<'_>,
    options: Option<&Value>,
    whose: impl Fn() -> (String, String),
    out: &mut Vec<Violation>,
) {
    let Some(options) = options else { return };
    let field = |name: &str| options.get(name).and_then(Value::as_str).unwrap_or("");
    let kind = field("type");
    if !kind.is_empty() && !SELINUX_TYPES.contains(&kind) {
        let (path, who) = whose();
        out.push(pod.violation(
            format!("{path}.type"),
            format!("{who} sets SELinux type \"{kind}\""),
            "remove seLinuxOptions.type or set it to container_t".to_string(),
        ));
    }
    for name in ["user", "role"] {
        let value = field(name);
        if !value.is_empty() {
            let (path, who) = whose();
            out.push(pod.violation(
                format!("{path}.{name}"),
                format!("{who} sets a custom SELinux {name} \"{value}\""),
                format!("remove seLinuxOptions.{name}"),
            ));
        }
    }
}

/// How a finding fixes an unconfined AppArmor profile.
const APPARMOR_FIX: &str =
    "set securityContext.appArmorProfile.type: RuntimeDefault (or Localhost)";

fn apparmor(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    let at_pod = || {
        let path = pod.at("securityContext.appArmorProfile.type");
        (path, "the pod".to_string())
    };
    apparmor_profile(pod, pod.security(&["appArmorProfile"]), at_pod, out);
    for c in pod.containers(Which::All) {
        let at_container = || (c.at("securityContext.appArmorProfile.type"), c.label());
        apparmor_profile(pod, c.security(&["appArmorProfile"]), at_container, out);
    }
    let annotations = pod
        .metadata()
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object);
    for (key, value) in annotations.into_iter().flatten() {
        let Some(container) = key.strip_prefix(APPARMOR_ANNOTATION_PREFIX) else {
            continue;
        };
        let value = value.as_str().unwrap_or("");
        if !(value.is_empty() || value == "runtime/default" || value.starts_with("localhost/")) {
            out.push(pod.violation(
                format!("{}.annotations[\"{key}\"]", pod.metadata_path()),
                format!("the AppArmor annotation for container \"{container}\" is \"{value}\""),
                format!("remove the annotation and {APPARMOR_FIX}"),
            ));
        }
    }
}

/// Checks one `appArmorProfile` of `pod`; `whose` names its path and owner, and is called
/// only when there is something to report.
fn apparmor_profile(
    pod: &Pod<'_>,
    profile: Option<&Value>,
    whose: impl Fn() -> (String, String),
    out: &mut Vec<Violation>,
) {
    let Some(profile) = profile else { return };
    let kind = profile.get("type").and_then(Value::as_str).unwrap_or("");
    if !CONFINED_PROFILES.contains(&kind) {
        let (path, who) = whose();
        out.push(pod.violation(
            path,
            format!("{who} sets AppArmor profile type \"{kind}\""),
            APPARMOR_FIX.to_string(),
        ));
    }
}

fn volume_types(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    for (index, name, volume) in pod.volumes() {
        let Some(fields) = volume.as_object() else {
            continue;
        };
        for (source, value) in fields {
            if source == "name" || value.is_null() || VOLUME_SOURCES.contains(&source.as_str()) {
                continue;
            }
            out.push(pod.violation(
                pod.at(&format!("volumes[{index}].{source}")),
                format!("volume \"{name}\" has type {source}, which restricted pods may not use"),
                "use a configMap, secret, emptyDir, projected, csi, ephemeral or persistentVolumeClaim volume".to_string(),
            ));
        }
    }
}

fn priv_esc(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    if pod.is_windows() {
        return;
    }
    for c in pod.containers(Which::All) {
        let value = c.security(&["allowPrivilegeEscalation"]);
        if value != Some(&Value::Bool(false)) {
            let message = match value {
                None => format!(
                    "{} does not set allowPrivilegeEscalation to false",
                    c.label()
                ),
                Some(v) => format!("{} sets allowPrivilegeEscalation to {v}", c.label()),
            };
            out.push(pod.violation(
                c.at("securityContext.allowPrivilegeEscalation"),
                message,
                "set securityContext.allowPrivilegeEscalation: false".to_string(),
            ));
        }
    }
}

fn run_as_non_root(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    const FIX: &str = "set securityContext.runAsNonRoot: true";
    if pod.in_user_namespace() {
        return;
    }
    let at_pod = pod.security(&["runAsNonRoot"]);
    if let Some(value) = at_pod
        && value != &Value::Bool(true)
    {
        out.push(pod.violation(
            pod.at("securityContext.runAsNonRoot"),
            format!("the pod sets runAsNonRoot to {value}"),
            FIX.to_string(),
        ));
    }
    for c in pod.containers(Which::All) {
        match c.security(&["runAsNonRoot"]) {
            Some(value) if value != &Value::Bool(true) => out.push(pod.violation(
                c.at("securityContext.runAsNonRoot"),
                format!("{} sets runAsNonRoot to {value}", c.label()),
                FIX.to_string(),
            )),
            Some(_) => {}
            // Unset on the container: covered by a pod-level true; a pod-level false is
            // reported once, above.
            None if at_pod.is_none() => out.push(pod.violation(
                c.at("securityContext.runAsNonRoot"),
                format!(
                    "neither the pod nor {} sets runAsNonRoot to true",
                    c.label()
                ),
                format!("{FIX} in the pod's securityContext"),
            )),
            None => {}
        }
    }
}

fn run_as_user(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    const FIX: &str = "set securityContext.runAsUser to a non-zero UID, e.g. 65532";
    let is_root = |v: Option<&Value>| v.and_then(Value::as_i64) == Some(0);
    if pod.in_user_namespace() {
        return;
    }
    if is_root(pod.security(&["runAsUser"])) {
        out.push(pod.violation(
            pod.at("securityContext.runAsUser"),
            "the pod runs as root (runAsUser: 0)".to_string(),
            FIX.to_string(),
        ));
    }
    for c in pod.containers(Which::All) {
        if is_root(c.security(&["runAsUser"])) {
            out.push(pod.violation(
                c.at("securityContext.runAsUser"),
                format!("{} runs as root (runAsUser: 0)", c.label()),
                FIX.to_string(),
            ));
        }
    }
}

fn host_probes(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    // (handler as a path names it, the keys that lead to it inside a container).
    const HANDLERS: [(&str, &[&str]); 5] = [
        ("livenessProbe", &["livenessProbe"]),
        ("readinessProbe", &["readinessProbe"]),
        ("startupProbe", &["startupProbe"]),
        ("lifecycle.postStart", &["lifecycle", "postStart"]),
        ("lifecycle.preStop", &["lifecycle", "preStop"]),
    ];
    for c in pod.containers(Which::All) {
        for (handler, keys) in HANDLERS {
            let Some(hook) = c.get(keys) else { continue };
            for action in ["httpGet", "tcpSocket"] {
                let host = dig(Some(hook), &[action, "host"]);
                let host = host.and_then(Value::as_str).unwrap_or("");
                if !host.is_empty() {
                    out.push(pod.violation(
                        c.at(&format!("{handler}.{action}.host")),
                        format!("the {handler} of {} targets host \"{host}\"", c.label()),
                        format!("remove {handler}.{action}.host so the handler targets the pod"),
                    ));
                }
            }
        }
    }
}

fn host_process(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    const FIX: &str = "remove securityContext.windowsOptions.hostProcess or set it to false";
    if truthy(pod.security(&["windowsOptions", "hostProcess"])) {
        out.push(pod.violation(
            pod.at("securityContext.windowsOptions.hostProcess"),
            "the pod runs as a windows host process".to_string(),
            FIX.to_string(),
        ));
    }
    for c in pod.containers(Which::All) {
        if truthy(c.security(&["windowsOptions", "hostProcess"])) {
            out.push(pod.violation(
                c.at("securityContext.windowsOptions.hostProcess"),
                format!("{} runs as a windows host process", c.label()),
                FIX.to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{
        MIGRATE, POD, WEB, bundle_with, check, hardened_bundle, object, paths, paths_after,
        pod_spec, remove, set,
    };

    const ALL: [&str; 16] = [
        "PSS-HOST-NAMESPACES",
        "PSS-PRIVILEGED",
        "PSS-CAPABILITIES",
        "PSS-HOST-PATH",
        "PSS-HOST-PORTS",
        "PSS-PROC-MOUNT",
        "PSS-SECCOMP",
        "PSS-SYSCTLS",
        "PSS-SELINUX",
        "PSS-APPARMOR",
        "PSS-VOLUME-TYPES",
        "PSS-PRIV-ESC",
        "PSS-RUN-AS-NON-ROOT",
        "PSS-RUN-AS-USER",
        "PSS-HOST-PROBES",
        "PSS-HOST-PROCESS",
    ];

    #[test]
    fn the_hardened_bundle_passes_every_pod_security_rule() {
        for id in ALL {
            assert_eq!(check(id, &hardened_bundle()), vec![], "{id}");
        }
    }

    #[test]
    fn host_namespaces_fails_on_host_network() {
        let found = check(
            "PSS-HOST-NAMESPACES",
            &bundle_with(|d| set(d, &format!("{POD}/hostNetwork"), json!(true))),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.template.spec.hostNetwork");
        assert_eq!(
            found[0].message,
            "the pod shares the host's network namespace"
        );
        assert_eq!(found[0].fix, "remove hostNetwork or set it to false");
    }

    #[test]
    fn host_namespaces_passes_when_explicitly_false() {
        let found = paths_after("PSS-HOST-NAMESPACES", |d| {
            set(d, &format!("{POD}/hostPID"), json!(false));
            set(d, &format!("{POD}/hostIPC"), json!(false));
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn host_namespaces_fails_on_host_pid_and_ipc() {
        let found = paths_after("PSS-HOST-NAMESPACES", |d| {
            set(d, &format!("{POD}/hostPID"), json!(true));
            set(d, &format!("{POD}/hostIPC"), json!(true));
        });
        assert_eq!(
            found,
            ["spec.template.spec.hostPID", "spec.template.spec.hostIPC"]
        );
    }

    #[test]
    fn privileged_fails_on_a_privileged_init_container() {
        let found = check(
            "PSS-PRIVILEGED",
            &bundle_with(|d| {
                set(
                    d,
                    &format!("{MIGRATE}/securityContext/privileged"),
                    json!(true),
                )
            }),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.initContainers[0].securityContext.privileged"
        );
        assert_eq!(
            found[0].message,
            "init container \"migrate\" runs privileged"
        );
    }

    #[test]
    fn privileged_passes_when_explicitly_false() {
        let found = paths_after("PSS-PRIVILEGED", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/privileged"),
                json!(false),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn capabilities_fails_without_drop_all() {
        let found = paths_after("PSS-CAPABILITIES", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/capabilities/drop"),
                json!(["NET_RAW"]),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].securityContext.capabilities.drop"]
        );
    }

    #[test]
    fn capabilities_fails_without_any_capabilities() {
        let found = paths_after("PSS-CAPABILITIES", |d| {
            remove(d, &format!("{MIGRATE}/securityContext/capabilities"));
        });
        assert_eq!(
            found,
            ["spec.template.spec.initContainers[0].securityContext.capabilities.drop"]
        );
    }

    #[test]
    fn capabilities_fails_on_an_added_capability() {
        let found = check(
            "PSS-CAPABILITIES",
            &bundle_with(|d| {
                set(
                    d,
                    &format!("{WEB}/securityContext/capabilities/add"),
                    json!(["NET_BIND_SERVICE", "NET_RAW"]),
                );
            }),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.containers[0].securityContext.capabilities.add[1]"
        );
        assert_eq!(
            found[0].message,
            "container \"web\" adds capability NET_RAW"
        );
    }

    #[test]
    fn capabilities_passes_adding_net_bind_service() {
        let found = paths_after("PSS-CAPABILITIES", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/capabilities/add"),
                json!(["NET_BIND_SERVICE"]),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn capabilities_is_case_sensitive_like_pod_security() {
        let found = paths_after("PSS-CAPABILITIES", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/capabilities/drop"),
                json!(["all"]),
            );
        });
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn windows_pods_are_exempt_from_capabilities_seccomp_and_priv_esc() {
        let bundle = bundle_with(|d| {
            set(d, &format!("{POD}/os"), json!({"name": "windows"}));
            remove(d, &format!("{POD}/securityContext/seccompProfile"));
            remove(d, &format!("{WEB}/securityContext/capabilities"));
            remove(
                d,
                &format!("{WEB}/securityContext/allowPrivilegeEscalation"),
            );
        });
        for id in ["PSS-CAPABILITIES", "PSS-SECCOMP", "PSS-PRIV-ESC"] {
            assert_eq!(check(id, &bundle), vec![], "{id}");
        }
    }

    #[test]
    fn host_path_fails_on_a_host_path_volume() {
        let found = paths_after("PSS-HOST-PATH", |d| {
            set(
                d,
                &format!("{POD}/volumes/0"),
                json!({"name": "logs", "hostPath": {"path": "/var/log"}}),
            );
        });
        assert_eq!(found, ["spec.template.spec.volumes[0].hostPath"]);
    }

    #[test]
    fn host_path_passes_without_volumes() {
        let found = paths_after("PSS-HOST-PATH", |d| remove(d, &format!("{POD}/volumes")));
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn host_ports_fails_on_a_host_port() {
        let found = check(
            "PSS-HOST-PORTS",
            &bundle_with(|d| set(d, &format!("{WEB}/ports/0/hostPort"), json!(80))),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.containers[0].ports[0].hostPort"
        );
        assert_eq!(found[0].message, "container \"web\" binds host port 80");
    }

    #[test]
    fn host_ports_passes_on_host_port_zero() {
        let found = paths_after("PSS-HOST-PORTS", |d| {
            set(d, &format!("{WEB}/ports/0/hostPort"), json!(0));
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn proc_mount_fails_when_unmasked() {
        let found = paths_after("PSS-PROC-MOUNT", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/procMount"),
                json!("Unmasked"),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].securityContext.procMount"]
        );
    }

    #[test]
    fn proc_mount_fails_when_unmasked_even_in_a_user_namespace() {
        let found = paths_after("PSS-PROC-MOUNT", |d| {
            set(d, &format!("{POD}/hostUsers"), json!(false));
            set(
                d,
                &format!("{WEB}/securityContext/procMount"),
                json!("Unmasked"),
            );
        });
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn proc_mount_passes_on_default() {
        let found = paths_after("PSS-PROC-MOUNT", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/procMount"),
                json!("Default"),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn seccomp_fails_when_neither_pod_nor_containers_set_it() {
        let found = paths_after("PSS-SECCOMP", |d| {
            remove(d, &format!("{POD}/securityContext/seccompProfile"));
        });
        assert_eq!(
            found,
            [
                "spec.template.spec.initContainers[0].securityContext.seccompProfile.type",
                "spec.template.spec.containers[0].securityContext.seccompProfile.type",
            ]
        );
    }

    #[test]
    fn seccomp_passes_when_every_container_sets_it() {
        let found = paths_after("PSS-SECCOMP", |d| {
            remove(d, &format!("{POD}/securityContext/seccompProfile"));
            for c in [WEB, MIGRATE] {
                set(
                    d,
                    &format!("{c}/securityContext/seccompProfile"),
                    json!({"type": "Localhost", "localhostProfile": "p.json"}),
                );
            }
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn seccomp_fails_on_an_unconfined_container_despite_the_pod_level() {
        let found = paths_after("PSS-SECCOMP", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/seccompProfile"),
                json!({"type": "Unconfined"}),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].securityContext.seccompProfile.type"]
        );
    }

    #[test]
    fn seccomp_reports_an_unconfined_pod_once() {
        let found = paths_after("PSS-SECCOMP", |d| {
            set(
                d,
                &format!("{POD}/securityContext/seccompProfile"),
                json!({"type": "Unconfined"}),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.securityContext.seccompProfile.type"]
        );
    }

    #[test]
    fn sysctls_fails_on_an_unsafe_sysctl() {
        let found = check(
            "PSS-SYSCTLS",
            &bundle_with(|d| {
                set(
                    d,
                    &format!("{POD}/securityContext/sysctls"),
                    json!([
                        {"name": "net.ipv4.tcp_keepalive_time", "value": "60"},
                        {"name": "kernel.msgmax", "value": "65536"}
                    ]),
                );
            }),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.securityContext.sysctls[1].name"
        );
        assert_eq!(
            found[0].message,
            "the pod sets the unsafe sysctl \"kernel.msgmax\""
        );
    }

    #[test]
    fn sysctls_passes_on_safe_sysctls() {
        let found = paths_after("PSS-SYSCTLS", |d| {
            set(
                d,
                &format!("{POD}/securityContext/sysctls"),
                json!([{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn selinux_fails_on_a_custom_type_user_and_role() {
        let found = paths_after("PSS-SELINUX", |d| {
            set(
                d,
                &format!("{POD}/securityContext/seLinuxOptions"),
                json!({"type": "spc_t", "user": "system_u", "role": "system_r"}),
            );
        });
        assert_eq!(
            found,
            [
                "spec.template.spec.securityContext.seLinuxOptions.type",
                "spec.template.spec.securityContext.seLinuxOptions.user",
                "spec.template.spec.securityContext.seLinuxOptions.role",
            ]
        );
    }

    #[test]
    fn selinux_passes_on_a_container_type_and_level() {
        let found = paths_after("PSS-SELINUX", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/seLinuxOptions"),
                json!({"type": "container_t", "level": "s0:c123,c456"}),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn apparmor_fails_on_an_unconfined_field() {
        let found = paths_after("PSS-APPARMOR", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/appArmorProfile"),
                json!({"type": "Unconfined"}),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].securityContext.appArmorProfile.type"]
        );
    }

    #[test]
    fn apparmor_fails_on_an_unconfined_annotation() {
        let found = paths_after("PSS-APPARMOR", |d| {
            set(
                d,
                "/spec/template/metadata/annotations",
                json!({"container.apparmor.security.beta.kubernetes.io/web": "unconfined"}),
            );
        });
        assert_eq!(
            found,
            [
                "spec.template.metadata.annotations[\"container.apparmor.security.beta.kubernetes.io/web\"]"
            ]
        );
    }

    #[test]
    fn apparmor_passes_on_runtime_default_and_localhost() {
        let found = paths_after("PSS-APPARMOR", |d| {
            set(
                d,
                &format!("{POD}/securityContext/appArmorProfile"),
                json!({"type": "RuntimeDefault"}),
            );
            set(
                d,
                "/spec/template/metadata/annotations",
                json!({"container.apparmor.security.beta.kubernetes.io/web": "localhost/web"}),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn volume_types_fails_on_a_host_path_and_an_nfs_volume() {
        let found = paths_after("PSS-VOLUME-TYPES", |d| {
            set(
                d,
                &format!("{POD}/volumes"),
                json!([
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "logs", "hostPath": {"path": "/var/log"}},
                    {"name": "share", "nfs": {"server": "nfs", "path": "/"}}
                ]),
            );
        });
        assert_eq!(
            found,
            [
                "spec.template.spec.volumes[1].hostPath",
                "spec.template.spec.volumes[2].nfs",
            ]
        );
    }

    #[test]
    fn volume_types_passes_on_allowed_types() {
        let found = paths_after("PSS-VOLUME-TYPES", |d| {
            set(
                d,
                &format!("{POD}/volumes"),
                json!([
                    {"name": "a", "configMap": {"name": "web"}},
                    {"name": "b", "secret": {"secretName": "web"}},
                    {"name": "c", "projected": {"sources": []}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "e", "image": {"reference": "registry.example/data:1"}}
                ]),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn priv_esc_fails_when_unset() {
        let found = check(
            "PSS-PRIV-ESC",
            &bundle_with(|d| {
                remove(
                    d,
                    &format!("{WEB}/securityContext/allowPrivilegeEscalation"),
                )
            }),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation"
        );
        assert_eq!(
            found[0].message,
            "container \"web\" does not set allowPrivilegeEscalation to false"
        );
        assert_eq!(
            found[0].fix,
            "set securityContext.allowPrivilegeEscalation: false"
        );
    }

    #[test]
    fn priv_esc_fails_on_an_ephemeral_container_set_to_true() {
        let found = paths_after("PSS-PRIV-ESC", |d| {
            let mut debug = super::super::testing::container("debug");
            set(
                &mut debug,
                "/securityContext/allowPrivilegeEscalation",
                json!(true),
            );
            set(d, &format!("{POD}/ephemeralContainers"), json!([debug]));
        });
        assert_eq!(
            found,
            ["spec.template.spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation"]
        );
    }

    #[test]
    fn run_as_non_root_fails_when_nobody_sets_it() {
        let found = paths_after("PSS-RUN-AS-NON-ROOT", |d| {
            remove(d, &format!("{POD}/securityContext/runAsNonRoot"));
        });
        assert_eq!(
            found,
            [
                "spec.template.spec.initContainers[0].securityContext.runAsNonRoot",
                "spec.template.spec.containers[0].securityContext.runAsNonRoot",
            ]
        );
    }

    #[test]
    fn run_as_non_root_fails_on_an_explicit_false_despite_the_pod_level() {
        let found = paths_after("PSS-RUN-AS-NON-ROOT", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/runAsNonRoot"),
                json!(false),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].securityContext.runAsNonRoot"]
        );
    }

    #[test]
    fn run_as_non_root_passes_when_every_container_sets_it() {
        let found = paths_after("PSS-RUN-AS-NON-ROOT", |d| {
            remove(d, &format!("{POD}/securityContext/runAsNonRoot"));
            for c in [WEB, MIGRATE] {
                set(d, &format!("{c}/securityContext/runAsNonRoot"), json!(true));
            }
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn run_as_non_root_and_user_are_relaxed_in_a_user_namespace() {
        let bundle = bundle_with(|d| {
            set(d, &format!("{POD}/hostUsers"), json!(false));
            set(
                d,
                &format!("{POD}/securityContext/runAsNonRoot"),
                json!(false),
            );
            set(d, &format!("{POD}/securityContext/runAsUser"), json!(0));
        });
        assert_eq!(check("PSS-RUN-AS-NON-ROOT", &bundle), vec![]);
        assert_eq!(check("PSS-RUN-AS-USER", &bundle), vec![]);
    }

    #[test]
    fn run_as_user_fails_on_root_at_pod_and_container_level() {
        let found = paths_after("PSS-RUN-AS-USER", |d| {
            set(d, &format!("{POD}/securityContext/runAsUser"), json!(0));
            set(d, &format!("{MIGRATE}/securityContext/runAsUser"), json!(0));
        });
        assert_eq!(
            found,
            [
                "spec.template.spec.securityContext.runAsUser",
                "spec.template.spec.initContainers[0].securityContext.runAsUser",
            ]
        );
    }

    #[test]
    fn run_as_user_passes_when_unset() {
        let found = paths_after("PSS-RUN-AS-USER", |d| {
            remove(d, &format!("{POD}/securityContext/runAsUser"));
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn host_probes_fails_on_a_probe_host() {
        let found = paths_after("PSS-HOST-PROBES", |d| {
            set(
                d,
                &format!("{WEB}/readinessProbe/httpGet/host"),
                json!("10.0.0.1"),
            );
            set(
                d,
                &format!("{WEB}/lifecycle/preStop"),
                json!({"tcpSocket": {"host": "db", "port": 5432}}),
            );
        });
        assert_eq!(
            found,
            [
                "spec.template.spec.containers[0].readinessProbe.httpGet.host",
                "spec.template.spec.containers[0].lifecycle.preStop.tcpSocket.host",
            ]
        );
    }

    #[test]
    fn host_probes_passes_on_an_empty_host() {
        let found = paths_after("PSS-HOST-PROBES", |d| {
            set(d, &format!("{WEB}/livenessProbe/httpGet/host"), json!(""));
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn host_process_fails_on_a_host_process_container() {
        let found = paths_after("PSS-HOST-PROCESS", |d| {
            set(
                d,
                &format!("{WEB}/securityContext/windowsOptions/hostProcess"),
                json!(true),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].securityContext.windowsOptions.hostProcess"]
        );
    }

    #[test]
    fn host_process_passes_when_false() {
        let found = paths_after("PSS-HOST-PROCESS", |d| {
            set(
                d,
                &format!("{POD}/securityContext/windowsOptions/hostProcess"),
                json!(false),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn every_pod_bearing_kind_is_checked_at_its_own_path() {
        let mut spec = pod_spec();
        remove(
            &mut spec,
            "/containers/0/securityContext/allowPrivilegeEscalation",
        );
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": spec});
        let cases = [
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}),
                "spec",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                    "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}}),
                "spec.jobTemplate.spec.template.spec",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"}, "spec": {"template": template}}),
                "spec.template.spec",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "spec": {"template": template}}),
                "spec.template.spec",
            ),
        ];
        for (value, prefix) in cases {
            let found = paths("PSS-PRIV-ESC", &[object(value)]);
            assert_eq!(
                found,
                [format!(
                    "{prefix}.containers[0].securityContext.allowPrivilegeEscalation"
                )]
            );
        }
    }

    #[test]
    fn a_bare_pod_reads_apparmor_annotations_from_its_own_metadata() {
        let value = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"container.apparmor.security.beta.kubernetes.io/web": "unconfined"}},
            "spec": pod_spec()
        });
        assert_eq!(
            paths("PSS-APPARMOR", &[object(value)]),
            ["metadata.annotations[\"container.apparmor.security.beta.kubernetes.io/web\"]"]
        );
    }

    #[test]
    fn objects_without_pods_are_ignored() {
        let config =
            object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}));
        for id in ALL {
            assert_eq!(check(id, std::slice::from_ref(&config)), vec![], "{id}");
        }
    }
}
