//! CloudWatch's Embedded Metric Format specification, as a checker: what CloudWatch Logs requires of a log event
//! before it extracts metrics from it (docs.aws.amazon.com, "Specification: Embedded metric format"). A line the
//! checker refuses would be stored as a plain log line, its numbers silently lost.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// The units CloudWatch accepts (`StandardUnit`).
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// A log event is at most 1 MB; EMF documents share the limit.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One metric a document declares: its name, unit and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// The namespace.
    pub namespace: String,
    /// The dimension sets, each with its values.
    pub dimensions: Vec<Vec<(String, String)>>,
    /// The metric's name.
    pub name: String,
    /// Its unit (`None` when the definition gives none).
    pub unit: Option<String>,
    /// Its value (the sum of an array of values).
    pub value: f64,
}

/// Checks `line` against the specification and returns the metrics it declares.
///
/// # Errors
/// What the specification requires that the line does not do.
pub fn parse(line: &str) -> Result<Vec<Declared>, String> {
    if line.len() > MAX_EVENT_BYTES {
        return Err(format!("{} bytes: over a log event's 1 MB", line.len()));
    }
    if line.contains('\n') {
        return Err("a log event is one line".into());
    }
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let root = root.as_object().ok_or("the root is not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws metadata object")?;
    only(
        aws,
        &["Timestamp", "CloudWatchMetrics", "LogGroupName"],
        "_aws",
    )?;
    match aws.get("Timestamp") {
        Some(Value::Number(n)) if n.as_u64().is_some() => {}
        other => {
            return Err(format!(
                "_aws.Timestamp must be epoch milliseconds, got {other:?}"
            ));
        }
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics is not an array")?;
    let mut declared = Vec::new();
    for directive in directives {
        declared.extend(directive_metrics(root, directive)?);
    }
    Ok(declared)
}

fn only(object: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(format!(
            "{what} has a member the specification does not define: {extra}"
        )),
        None => Ok(()),
    }
}

/// `value` as a string of 1-1024 characters: the length the specification allows a namespace, a dimension's
/// value and a metric's name.
fn text(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .filter(|t| (1..=1024).contains(&t.len()))
}

fn directive_metrics(
    root: &Map<String, Value>,
    directive: &Value,
) -> Result<Vec<Declared>, String> {
    let directive = directive
        .as_object()
        .ok_or("a MetricDirective is not an object")?;
    only(
        directive,
        &["Namespace", "Dimensions", "Metrics"],
        "a MetricDirective",
    )?;
    let namespace = text(directive.get("Namespace"))
        .ok_or("Namespace must be a string of 1-1024 characters")?;
    let sets = directive
        .get("Dimensions")
        .and_then(Value::as_array)
        .ok_or("Dimensions must be an array of DimensionSets")?;
    let mut dimensions = Vec::new();
    for set in sets {
        let names = set.as_array().ok_or("a DimensionSet is not an array")?;
        if names.len() > 30 {
            return Err("a DimensionSet holds at most 30 dimensions".into());
        }
        let mut values = Vec::new();
        for name in names {
            let name = name.as_str().ok_or("a dimension name is not a string")?;
            let value = text(root.get(name)).ok_or_else(|| {
                format!("dimension {name} needs a string member of 1-1024 characters")
            })?;
            values.push((name.to_owned(), value.to_owned()));
        }
        dimensions.push(values);
    }
    let metrics = directive
        .get("Metrics")
        .and_then(Value::as_array)
        .ok_or("Metrics must be an array")?;
    if metrics.len() > 100 {
        return Err(format!(
            "{} metrics: a directive holds at most 100",
            metrics.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut declared = Vec::new();
    for definition in metrics {
        let definition = definition
            .as_object()
            .ok_or("a MetricDefinition is not an object")?;
        only(
            definition,
            &["Name", "Unit", "StorageResolution"],
            "a MetricDefinition",
        )?;
        let name = text(definition.get("Name"))
            .ok_or("a metric's Name must be a string of 1-1024 characters")?;
        if !seen.insert(name) {
            return Err(format!("metric {name} is declared twice"));
        }
        let unit = match definition.get("Unit") {
            None => None,
            Some(Value::String(unit)) if UNITS.contains(&unit.as_str()) => Some(unit.clone()),
            Some(other) => return Err(format!("{name}: {other} is not a CloudWatch unit")),
        };
        match definition.get("StorageResolution") {
            None => {}
            Some(v) if v == 1 || v == 60 => {}
            Some(other) => return Err(format!("{name}: StorageResolution {other} is not 1 or 60")),
        }
        let value = match root.get(name) {
            Some(Value::Number(n)) => n.as_f64().ok_or("not a finite number")?,
            Some(Value::Array(values)) if values.len() <= 100 => values
                .iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| format!("{name}: {v} is not a number"))
                })
                .sum::<Result<f64, String>>()?,
            other => {
                return Err(format!(
                    "metric {name} needs a number member, got {other:?}"
                ));
            }
        };
        declared.push(Declared {
            namespace: namespace.to_owned(),
            dimensions: dimensions.clone(),
            name: name.to_owned(),
            unit,
            value,
        });
    }
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_document_gives_its_metrics_and_a_broken_one_says_why() {
        let good = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Function"]],"Metrics":[{"Name":"X","Unit":"Count"}]}]},"Function":"f","X":2}"#;

        let declared = parse(good).expect("valid");

        assert_eq!(declared[0].name, "X");
        assert_eq!(declared[0].value, 2.0);
        assert_eq!(
            declared[0].dimensions,
            [[("Function".to_owned(), "f".to_owned())]]
        );
        for (broken, why) in [
            (good.replace(r#""Function":"f","#, ""), "dimension"),
            (good.replace(r#""X":2"#, r#""X":"2""#), "number"),
            (good.replace("Count", "Things"), "unit"),
            (
                good.replace(r#""Timestamp":1"#, r#""Timestamp":"now""#),
                "Timestamp",
            ),
            (
                good.replace(r#""Namespace":"n","#, r#""Namespace":"n","Extra":1,"#),
                "member",
            ),
        ] {
            let err = parse(&broken).expect_err(why);
            assert!(err.contains(why), "{err}");
        }
    }
}
