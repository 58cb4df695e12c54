//! The availability proof in words: one line that scales to many Services for the release
//! summary, and a short form for `ferry history`'s column.

use crate::release::ServiceAvailability;

/// The Service closest to its floor (smallest margin, then name).
fn lowest(availability: &[ServiceAvailability]) -> Option<&ServiceAvailability> {
    availability.iter().min_by(|a, b| {
        margin(a)
            .cmp(&margin(b))
            .then_with(|| a.service.cmp(&b.service))
    })
}

fn margin(a: &ServiceAvailability) -> i64 {
    i64::from(a.min_ready) - i64::from(a.floor)
}

/// `3 of 3`: the lowest number of endpoints taking traffic against the floor; with draining
/// endpoints among them, counted apart: `3 ready + 3 draining, floor 3` (never `6 of 3`).
pub fn figure(a: &ServiceAvailability) -> String {
    if a.draining_at_min == 0 {
        format!("{} of {}", a.min_ready, a.floor)
    } else {
        format!(
            "{} ready + {} draining, floor {}",
            ready_at_min(a),
            a.draining_at_min,
            a.floor
        )
    }
}

/// Of the lowest count, the endpoints that were ready (not draining).
fn ready_at_min(a: &ServiceAvailability) -> u32 {
    a.min_ready.saturating_sub(a.draining_at_min)
}

/// The release summary's availability clause: `12 Services never below their floors (lowest:
/// cartservice 2 of 2)`, `service web never below its floor (lowest 3 of 3)`, or what fell.
pub fn summary(availability: &[ServiceAvailability]) -> String {
    let Some(low) = lowest(availability) else {
        return "no running endpoints to keep available".to_string();
    };
    let fell = availability.iter().filter(|a| !a.held).count();
    match (availability.len(), fell) {
        (1, 0) => format!(
            "service {} never below its floor (lowest {})",
            low.service,
            figure(low)
        ),
        (n, 0) => format!(
            "{n} Services never below their floors (lowest: {} {})",
            low.service,
            figure(low)
        ),
        (n, fell) => format!(
            "{fell} of {n} Services fell below their floors (lowest: {} {})",
            low.service,
            figure(low)
        ),
    }
}

/// `ferry history`'s column: `web 3/3`, `12 held, lowest web 2/2`, `web fell to 1/3`, or `-`.
pub fn short(availability: &[ServiceAvailability]) -> String {
    let Some(low) = lowest(availability) else {
        return "-".to_string();
    };
    let mut ratio = format!("{}/{}", ready_at_min(low), low.floor);
    if low.draining_at_min > 0 {
        ratio.push_str(&format!(" +{} draining", low.draining_at_min));
    }
    if !low.held {
        return format!("{} fell to {ratio}", low.service);
    }
    match availability.len() {
        1 => format!("{} {ratio}", low.service),
        n => format!("{n} held, lowest {} {ratio}", low.service),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, min_ready: u32, floor: u32) -> ServiceAvailability {
        serde_json::from_value(serde_json::json!({
            "service": name, "floor": floor, "min_ready": min_ready,
            "ready_now": min_ready, "held": min_ready >= floor,
        }))
        .expect("figures")
    }

    #[test]
    fn one_line_scales_to_many_services() {
        let many: Vec<_> = (0..12)
            .map(|i| service(&format!("svc{i:02}"), 4, 3))
            .chain([service("cartservice", 2, 2)])
            .collect();
        assert_eq!(
            summary(&many),
            "13 Services never below their floors (lowest: cartservice 2 of 2)"
        );
        assert_eq!(short(&many), "13 held, lowest cartservice 2/2");
    }

    #[test]
    fn one_service_and_none() {
        assert_eq!(
            summary(&[service("web", 3, 3)]),
            "service web never below its floor (lowest 3 of 3)"
        );
        assert_eq!(short(&[service("web", 3, 3)]), "web 3/3");
        assert_eq!(summary(&[]), "no running endpoints to keep available");
        assert_eq!(short(&[]), "-");
    }

    #[test]
    fn draining_endpoints_are_counted_apart() {
        let mut web = service("web", 3, 3);
        web.draining_at_min = 1;
        assert_eq!(
            summary(std::slice::from_ref(&web)),
            "service web never below its floor (lowest 2 ready + 1 draining, floor 3)"
        );
        assert_eq!(short(&[web]), "web 2/3 +1 draining");
        let mut drained = service("web", 6, 3);
        drained.draining_at_min = 3;
        assert!(!summary(std::slice::from_ref(&drained)).contains("6"));
        assert!(!short(&[drained]).contains("6/3"));
    }

    #[test]
    fn a_fall_is_named() {
        let figures = [service("web", 1, 3), service("api", 2, 2)];
        assert_eq!(
            summary(&figures),
            "1 of 2 Services fell below their floors (lowest: web 1 of 3)"
        );
        assert_eq!(short(&figures), "web fell to 1/3");
    }
}
