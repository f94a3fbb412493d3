//! The route table: which function API Gateway invokes for each route key, and the `$connect` authorizer, read
//! from the deploy template so the emulator and the deployed API cannot disagree.

/// One route of the API: which function API Gateway invokes for a route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `$connect`, `$disconnect`, `$default` or a custom key matched against `$request.body.action`.
    pub key: String,
    /// The Lambda function (the workspace binary) behind it.
    pub function: String,
}

/// The API's routes and its `$connect` authorizer.
///
/// The deploy template is the single source of truth: [`RouteTable::deployed`] reads `infra/template.yaml`
/// (embedded at compile time) and follows each `AWS::ApiGatewayV2::Route` to its integration, its function and
/// that function's `BuildProperties.Binary`, so a route added to the template is served by the emulator too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    /// Every route.
    pub routes: Vec<Route>,
    /// The REQUEST authorizer's function on `$connect`, if any.
    pub authorizer: Option<String>,
}

/// The deploy template, as built into this binary.
pub const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// Why the route table could not be read from a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Not YAML.
    #[error("the template is not valid YAML")]
    Yaml(#[from] serde_norway::Error),
    /// YAML, but not shaped as expected.
    #[error("template: {0}")]
    Shape(String),
}

impl RouteTable {
    /// The routes of `infra/template.yaml`.
    ///
    /// # Errors
    /// [`TemplateError`] when the embedded template cannot be followed (a test keeps that from shipping).
    pub fn deployed() -> Result<Self, TemplateError> {
        Self::from_template(TEMPLATE)
    }

    /// Reads the routes of a SAM/CloudFormation template: Route → `Target: !Sub integrations/${Integration}` →
    /// `IntegrationUri: !Sub …${Function.Arn}…` → `Metadata.BuildProperties.Binary`; the authorizer through the
    /// `$connect` route's `AuthorizerId: !Ref` and the authorizer's `AuthorizerUri`.
    ///
    /// # Errors
    /// [`TemplateError`] naming the resource or property that does not fit.
    pub fn from_template(text: &str) -> Result<Self, TemplateError> {
        use serde_norway::Value;
        let shape = |msg: String| TemplateError::Shape(msg);
        let root: Value = serde_norway::from_str(text)?;
        let resources = root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| shape("no Resources".into()))?;
        let resource = |name: &str| {
            resources
                .get(name)
                .ok_or_else(|| shape(format!("no resource {name}")))
        };
        let property = |name: &str, prop: &str| -> Result<Value, TemplateError> {
            resource(name)?
                .get("Properties")
                .and_then(|p| p.get(prop))
                .cloned()
                .ok_or_else(|| shape(format!("{name} has no {prop}")))
        };
        // `!Sub "...${Name}..."` or `!Sub "...${Name.Arn}..."` → Name; `!Ref Name` → Name.
        let referenced = |value: &Value, what: &str| -> Result<String, TemplateError> {
            let text = match value {
                Value::Tagged(tagged) => tagged.value.as_str(),
                other => other.as_str(),
            }
            .ok_or_else(|| shape(format!("{what} is not a !Sub or !Ref string")))?;
            if !text.contains("${") {
                return Ok(text.to_owned());
            }
            // The first `${…}` that names a resource, not a pseudo parameter such as `${AWS::Partition}`.
            let name = text
                .split("${")
                .skip(1)
                .filter_map(|part| part.split_once('}').map(|(name, _)| name))
                .find(|name| !name.starts_with("AWS::"))
                .ok_or_else(|| shape(format!("{what} names no resource")))?;
            Ok(name.trim_end_matches(".Arn").to_owned())
        };
        let binary = |function: &str| -> Result<String, TemplateError> {
            resource(function)?
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| shape(format!("{function} has no Metadata.BuildProperties.Binary")))
        };
        let function_of = |uri: &Value, what: &str| -> Result<String, TemplateError> {
            binary(&referenced(uri, what)?)
        };

        let mut routes = Vec::new();
        let mut authorizer = None;
        for (name, res) in resources {
            let name = name.as_str().unwrap_or_default();
            if res.get("Type").and_then(Value::as_str) != Some("AWS::ApiGatewayV2::Route") {
                continue;
            }
            let key = property(name, "RouteKey")?
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| shape(format!("{name}: RouteKey")))?;
            let integration = referenced(&property(name, "Target")?, &format!("{name}.Target"))?;
            let function = function_of(
                &property(&integration, "IntegrationUri")?,
                &format!("{integration}.IntegrationUri"),
            )?;
            if let (true, Ok(id)) = (key == "$connect", property(name, "AuthorizerId")) {
                let auth = referenced(&id, &format!("{name}.AuthorizerId"))?;
                authorizer = Some(function_of(
                    &property(&auth, "AuthorizerUri")?,
                    &format!("{auth}.AuthorizerUri"),
                )?);
            }
            routes.push(Route { key, function });
        }
        if routes.is_empty() {
            return Err(shape("no AWS::ApiGatewayV2::Route".into()));
        }
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { routes, authorizer })
    }

    /// The function for `route_key`.
    pub fn function_for(&self, route_key: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.key == route_key)
            .map(|r| r.function.as_str())
    }

    /// The route keys, in table order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_template_routes_every_route_key_to_its_workspace_binary() {
        let table = RouteTable::deployed().expect("infra/template.yaml can be followed");

        assert_eq!(table.function_for("$connect"), Some("ws-connect"));
        assert_eq!(table.function_for("$disconnect"), Some("ws-disconnect"));
        assert_eq!(table.function_for("$default"), Some("ws-default"));
        assert_eq!(table.authorizer.as_deref(), Some("ws-authorize"));
    }

    #[test]
    fn a_custom_route_in_the_template_is_picked_up() {
        let template = r#"
Resources:
  SendRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: { RouteKey: sendmessage, Target: !Sub "integrations/${SendIntegration}" }
  SendIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { IntegrationUri: !Sub "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${SendFunction.Arn}/invocations" }
  SendFunction:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: ws-send } }
"#;
        let table = RouteTable::from_template(template).expect("parses");

        assert_eq!(table.function_for("sendmessage"), Some("ws-send"));
        assert_eq!(table.authorizer, None);
    }

    #[test]
    fn a_route_pointing_at_a_missing_integration_is_an_error() {
        let template = r#"
Resources:
  R:
    Type: AWS::ApiGatewayV2::Route
    Properties: { RouteKey: $default, Target: !Sub "integrations/${Nope}" }
"#;
        let err = RouteTable::from_template(template).expect_err("missing integration");

        assert!(err.to_string().contains("Nope"), "{err}");
    }
}
