//! The route table: which function API Gateway invokes for each route key, and the `$connect` authorizer, read
//! from the deploy template so the emulator and the deployed API cannot disagree.

use std::collections::BTreeMap;
use std::str::FromStr;

/// One route of the API: which function API Gateway invokes for a route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `$connect`, `$disconnect`, `$default` or a custom key matched against `$request.body.action`.
    pub key: String,
    /// The Lambda function behind it, by the name the backend invokes it with ([`Naming`]).
    pub function: String,
}

/// Which name of a template's function the emulator invokes it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// `Metadata.BuildProperties.Binary`: the cargo binary, as `cargo lambda watch` serves it (and as the
    /// in-process backend knows the handlers).
    #[default]
    Binary,
    /// The template's logical id (`DefaultFunction`), as `sam local start-lambda` serves it, for functions in
    /// any language.
    LogicalId,
}

impl FromStr for Naming {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "binary" => Ok(Self::Binary),
            "logical-id" => Ok(Self::LogicalId),
            other => Err(format!("expected binary or logical-id, got {other}")),
        }
    }
}

/// What a function costs to run, as the template configures it (for the cost meter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    /// `MemorySize` in MB (the function's, else `Globals.Function`'s, else Lambda's default 128).
    pub memory_mb: u32,
    /// `Architectures: [arm64]` (priced lower per GB-second than x86_64, Lambda's default).
    pub arm64: bool,
}

impl Default for FunctionSpec {
    fn default() -> Self {
        Self {
            memory_mb: 128,
            arm64: false,
        }
    }
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
    /// Memory and architecture of every function above, by the same names.
    pub functions: BTreeMap<String, FunctionSpec>,
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
        Self::from_template_named(text, Naming::Binary)
    }

    /// [`RouteTable::from_template`], naming each function as `naming` says. With [`Naming::LogicalId`] the
    /// functions need no `BuildProperties` (any runtime, any language).
    ///
    /// # Errors
    /// [`TemplateError`] naming the resource or property that does not fit.
    pub fn from_template_named(text: &str, naming: Naming) -> Result<Self, TemplateError> {
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
        // A literal, or `!Ref Parameter` resolved to the parameter's Default.
        let resolve = |value: &Value| -> Option<Value> {
            match value {
                Value::Tagged(tagged) if tagged.tag == "Ref" => {
                    let name = tagged.value.as_str()?;
                    root.get("Parameters")?.get(name)?.get("Default").cloned()
                }
                other => Some(other.clone()),
            }
        };
        // A function property, else the one under `Globals.Function`.
        let setting = |function: &str, prop: &str| -> Option<Value> {
            let own = resource(function)
                .ok()?
                .get("Properties")
                .and_then(|p| p.get(prop));
            let global = root
                .get("Globals")
                .and_then(|g| g.get("Function"))
                .and_then(|f| f.get(prop));
            resolve(own.or(global)?)
        };
        let spec_of = |function: &str| {
            let memory_mb = setting(function, "MemorySize").and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            });
            let arm64 = setting(function, "Architectures")
                .and_then(|v| v.as_sequence().and_then(|s| s.first()).and_then(&resolve))
                .is_some_and(|arch| arch.as_str() == Some("arm64"));
            FunctionSpec {
                memory_mb: memory_mb
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(FunctionSpec::default().memory_mb),
                arm64,
            }
        };
        let mut functions = BTreeMap::new();
        let mut function_of = |uri: &Value, what: &str| -> Result<String, TemplateError> {
            let logical_id = referenced(uri, what)?;
            let name = match naming {
                Naming::Binary => binary(&logical_id)?,
                Naming::LogicalId => {
                    resource(&logical_id)?;
                    logical_id.clone()
                }
            };
            functions.insert(name.clone(), spec_of(&logical_id));
            Ok(name)
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
        // Functions no route names (ws-fanout, invoked by another function) are metered at their own size too.
        for (logical_id, res) in resources {
            let logical_id = logical_id.as_str().unwrap_or_default();
            if res.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let name = match naming {
                Naming::Binary => match binary(logical_id) {
                    Ok(name) => name,
                    Err(_) => continue,
                },
                Naming::LogicalId => logical_id.to_owned(),
            };
            functions.entry(name).or_insert_with(|| spec_of(logical_id));
        }
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self {
            routes,
            authorizer,
            functions,
        })
    }

    /// The function for `route_key`.
    pub fn function_for(&self, route_key: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.key == route_key)
            .map(|r| r.function.as_str())
    }

    /// What `function` costs to run (Lambda's defaults for a name the template does not have).
    pub fn spec(&self, function: &str) -> FunctionSpec {
        self.functions.get(function).copied().unwrap_or_default()
    }

    /// The route keys, in table order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use chat_shared::functions::{
        Function, WsAuthorize, WsConnect, WsDefault, WsDisconnect, WsFanout,
    };

    use super::*;

    #[test]
    fn the_deploy_template_routes_every_route_key_to_its_workspace_binary() {
        let table = RouteTable::deployed().expect("infra/template.yaml can be followed");

        assert_eq!(table.function_for("$connect"), Some(WsConnect::BINARY));
        assert_eq!(
            table.function_for("$disconnect"),
            Some(WsDisconnect::BINARY)
        );
        assert_eq!(table.function_for("$default"), Some(WsDefault::BINARY));
        assert_eq!(table.authorizer.as_deref(), Some(WsAuthorize::BINARY));
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
    fn the_deploy_template_gives_every_function_its_memory_and_architecture() {
        let table = RouteTable::deployed().expect("infra/template.yaml can be followed");

        for function in [
            WsConnect::BINARY,
            WsDisconnect::BINARY,
            WsDefault::BINARY,
            WsAuthorize::BINARY,
            WsFanout::BINARY,
        ] {
            assert_eq!(
                table.spec(function),
                FunctionSpec {
                    memory_mb: 256,
                    arm64: true
                },
                "{function}: Globals.Function's !Ref parameters, resolved to their defaults"
            );
        }
    }

    const PYTHON_TEMPLATE: &str = r#"
Globals:
  Function: { Runtime: python3.12, MemorySize: 512 }
Resources:
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      RouteKey: $connect
      AuthorizerId: !Ref Auth
      Target: !Sub "integrations/${ConnectIntegration}"
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${OnConnect.Arn}/invocations" }
  Auth:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties: { AuthorizerUri: !Sub "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${Gatekeeper.Arn}/invocations" }
  OnConnect:
    Type: AWS::Serverless::Function
    Properties: { Handler: app.connect, MemorySize: 1024, Architectures: [arm64] }
  Gatekeeper:
    Type: AWS::Serverless::Function
    Properties: { Handler: app.authorize }
"#;

    #[test]
    fn by_logical_id_a_template_of_any_runtime_is_followed_without_build_properties() {
        let table = RouteTable::from_template_named(PYTHON_TEMPLATE, Naming::LogicalId)
            .expect("no BuildProperties needed");

        assert_eq!(table.function_for("$connect"), Some("OnConnect"));
        assert_eq!(table.authorizer.as_deref(), Some("Gatekeeper"));
        assert_eq!(
            table.spec("OnConnect"),
            FunctionSpec {
                memory_mb: 1024,
                arm64: true
            }
        );
        assert_eq!(
            table.spec("Gatekeeper"),
            FunctionSpec {
                memory_mb: 512,
                arm64: false
            },
            "Globals.Function's MemorySize, Lambda's default architecture"
        );
    }

    #[test]
    fn by_binary_a_function_without_build_properties_is_an_error_that_names_it() {
        let err = RouteTable::from_template_named(PYTHON_TEMPLATE, Naming::Binary)
            .expect_err("no Binary to invoke");

        assert!(err.to_string().contains("OnConnect"), "{err}");
    }

    #[test]
    fn naming_parses_from_the_command_line_spelling() {
        assert_eq!("logical-id".parse(), Ok(Naming::LogicalId));
        assert_eq!("binary".parse(), Ok(Naming::Binary));
        assert!("LogicalId".parse::<Naming>().is_err());
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
