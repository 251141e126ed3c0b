//! The HTTP JSON API, in the spirit of the platform's application interface: devices and
//! their state, latest properties, history and events, the rules each broke, registrations,
//! commands that return the device's answer, firmware uploads and OTA tasks, and fault
//! injection. Documented in
//! docs/x-sim.md; firmware images themselves are served under `/firmware/...`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use x_protocol::{DeviceIdentity, RegistrationType};

use crate::firmware::FirmwareError;
use crate::platform::{Answer, Command, CommandError, Platform};
use crate::registry::{DeviceEntry, Format, ModelSource, Product};
use crate::sync::read;

/// The largest firmware image `PUT /api/firmware/...` accepts (the whole body is held in
/// memory while it is stored).
const MAX_IMAGE_BYTES: usize = 256 * 1024 * 1024;

/// The API's router (with the firmware server's routes merged in when there is one).
pub fn router(platform: Platform) -> Router {
    let api = Router::new()
        .route("/api/products", get(products).post(add_product))
        .route("/api/products/{product}/model", get(product_model))
        .route("/api/devices", get(devices).post(add_device))
        .route(
            "/api/devices/{product}/{node}",
            get(device).patch(patch_device),
        )
        .route(
            "/api/devices/{product}/{node}/properties",
            get(properties).post(set_properties),
        )
        .route(
            "/api/devices/{product}/{node}/properties/ask",
            post(ask_properties),
        )
        .route("/api/devices/{product}/{node}/history", get(history))
        .route("/api/devices/{product}/{node}/events", get(events))
        .route("/api/devices/{product}/{node}/messages", get(messages))
        .route("/api/devices/{product}/{node}/violations", get(violations))
        .route(
            "/api/devices/{product}/{node}/services/{service}",
            post(call_service),
        )
        .route(
            "/api/devices/{product}/{node}/passthrough",
            post(passthrough),
        )
        .route(
            "/api/devices/{product}/{node}/config",
            get(ask_config).post(set_config),
        )
        .route("/api/devices/{product}/{node}/firmware", get(ask_firmware))
        .route("/api/devices/{product}/{node}/ota", post(notify_ota))
        .route("/api/devices/{product}/{node}/session/rotate", post(rotate))
        .route("/api/devices/{product}/{node}/drop", post(drop_device))
        .route("/api/firmware", get(images))
        .route(
            "/api/firmware/{product}/{module}/{version}/{file}",
            // Images are bigger than axum's default 2 MB body limit.
            put(upload).layer(DefaultBodyLimit::max(MAX_IMAGE_BYTES)),
        )
        .route("/api/ota", get(tasks))
        .route("/api/ota/{product}/{module}", put(set_task))
        .route("/api/faults", get(faults).put(set_faults))
        .route("/api/stream", get(crate::stream::stream))
        .with_state(platform.clone());
    match platform.firmware() {
        Some(firmware) => api.merge(firmware.routes()),
        None => api,
    }
}

/// An error answer: a status and `{"error": "..."}` (plus the device's answer when it was a
/// bad one).
struct ApiError(StatusCode, Value);

impl ApiError {
    fn new(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Self(status, json!({"error": message.to_string()}))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let status = match &e {
            CommandError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            CommandError::UnknownDevice(_) => StatusCode::NOT_FOUND,
            CommandError::NoSession(_) => StatusCode::CONFLICT,
            CommandError::Build(_) => StatusCode::BAD_REQUEST,
            CommandError::BadAnswer { .. } => StatusCode::BAD_GATEWAY,
        };
        let mut body = json!({"error": e.to_string()});
        if let CommandError::BadAnswer { answer, .. } = &e {
            body["answer"] = answer_json(answer);
        }
        Self(status, body)
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn answer_json(a: &Answer) -> Value {
    let mut v = json!({
        "topic": a.topic,
        "HeaderCtrl": a.header_ctrl.code(),
        "MessageId": a.message_id,
        "Payload": a.payload,
    });
    if let Some(raw) = &a.raw {
        v["raw"] = json!(raw);
    }
    v
}

fn find(p: &Platform, product: &str, node: &str) -> Result<DeviceIdentity, ApiError> {
    p.identity(product, node).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("device {product}/{node} is not registered"),
        )
    })
}

async fn products(State(p): State<Platform>) -> Json<Value> {
    let registry = read(p.registry());
    Json(Value::Array(
        registry
            .products()
            .map(|p| {
                json!({
                    "open_id": p.open_id.as_str(),
                    "product_id": p.product_id.as_str(),
                    "registration": p.registration.code(),
                    "encrypted": p.encrypted,
                    "format": p.format.name(),
                    "model": p.model.as_ref().map(|m| m.name().to_owned()),
                    "script": p.script.is_some(),
                })
            })
            .collect(),
    ))
}

/// `GET /api/products/{product}/model`: the product's thing model, as it was registered (the
/// platform's export format), for tools that build forms and labels from it (the console).
async fn product_model(
    State(p): State<Platform>,
    Path(product): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let registry = read(p.registry());
    let entry = registry.product(&product).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("product {product} is not registered"),
        )
    })?;
    let source = entry.model.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("product {product} has no thing model (a passthrough product)"),
        )
    })?;
    serde_json::from_str(source.text()).map(Json).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("product {product}: its stored model is not JSON: {e}"),
        )
    })
}

/// The body of `POST /api/products`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProduct {
    open_id: String,
    product_id: String,
    product_key: String,
    registration: u8,
    #[serde(default)]
    encrypted: bool,
    format: String,
    /// The thing model JSON (an object).
    model: Option<Value>,
    /// A hand-written parsing script.
    script: Option<String>,
}

async fn add_product(
    State(p): State<Platform>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bad = |at: &str, e: &dyn std::fmt::Display| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("{at}: {e}"))
    };
    let n: NewProduct = parse_body(&body)?;
    let format = Format::parse(&n.format).map_err(|e| bad("format", &e))?;
    let model = match n.model {
        Some(m) => {
            let text = m.to_string();
            let name =
                x_codegen::model_name_for(std::path::Path::new(&format!("{}.json", n.product_id)));
            let model = ModelSource::new(name, text)
                .map_err(|d| bad("model", &crate::registry::diagnostics_line(&d)))?;
            Some(model)
        }
        None => None,
    };
    let product = Product::build(
        n.open_id.parse().map_err(|e| bad("open_id", &e))?,
        n.product_id.parse().map_err(|e| bad("product_id", &e))?,
        n.product_key.parse().map_err(|e| bad("product_key", &e))?,
        RegistrationType::from_code(i64::from(n.registration))
            .map_err(|e| bad("registration", &e))?,
        n.encrypted,
        format,
        model,
        n.script,
    )
    .map_err(|e| bad(e.field, &e.problem))?;
    let id = product.product_id.to_string();
    // It waits for the store's commit: on a blocking thread, not on the async workers.
    blocking(move || p.register_product(product)).await?;
    Ok((StatusCode::CREATED, Json(json!({"product_id": id}))))
}

/// A malformed field (the error names `body.<field>`) is a bad request; a refused
/// registration (unknown product, taken id) a conflict; a failing store the server's fault.
/// Runs a registration (which waits for the store) on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::sim::SimError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the registration task failed: {e}"),
            )
        })?
        .map_err(sim_error)
}

fn sim_error(e: crate::sim::SimError) -> ApiError {
    let status = match &e {
        crate::sim::SimError::Registry(r) if r.at.contains('.') => StatusCode::BAD_REQUEST,
        crate::sim::SimError::Registry(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e)
}

fn device_json(p: &Platform, d: &DeviceIdentity) -> Value {
    let registry = read(p.registry());
    let enabled = registry
        .device(d.product_id.as_str(), d.node_eui.as_str())
        .is_some_and(|d| d.enabled);
    drop(registry);
    let prefix = format!("{d}/");
    let firmware: serde_json::Map<String, Value> = p
        .state_map("firmware")
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|m| (m.to_owned(), v)))
        .collect();
    let ota: serde_json::Map<String, Value> = p
        .state_map("ota")
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|m| (m.to_owned(), v)))
        .collect();
    json!({
        "open_id": d.open_id.as_str(),
        "product_id": d.product_id.as_str(),
        "node_eui": d.node_eui.as_str(),
        "enabled": enabled,
        "online": p.online(d),
        "last_offline": p.last_offline(d),
        "last_seen_ms": p.last_seen(d),
        "session_id": p.session_grant(d).map(|g| g.session_id),
        "firmware": firmware,
        "config": p.state("config", &d.to_string()),
        "ota": ota,
        "violations": p.violation_count(d),
    })
}

async fn devices(State(p): State<Platform>) -> Json<Value> {
    let ids: Vec<(String, String)> = read(p.registry())
        .devices()
        .map(|d| (d.product_id.to_string(), d.node_eui.to_string()))
        .collect();
    Json(Value::Array(
        ids.iter()
            .filter_map(|(prod, node)| p.identity(prod, node))
            .map(|d| device_json(&p, &d))
            .collect(),
    ))
}

async fn add_device(
    State(p): State<Platform>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let entry: DeviceEntry = parse_body(&body)?;
    let device = blocking(move || p.register_device(entry, "body")).await?;
    // The platform's application interface hands the DeviceSecret to the vendor, who puts
    // it on the device; it is never logged.
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "product_id": device.product_id.as_str(),
            "node_eui": device.node_eui.as_str(),
            "device_secret": device.secret.expose_hex(),
            "enabled": device.enabled,
        })),
    ))
}

/// A request about one registered device: the platform, the device named by the path's
/// `{product}` and `{node}`, the other path parameters and the query parameters. Unknown
/// devices are a 404 and malformed paths or queries a 400, before any handler runs.
struct Dev {
    p: Platform,
    d: DeviceIdentity,
    path: HashMap<String, String>,
    query: HashMap<String, String>,
}

impl FromRequestParts<Platform> for Dev {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, p: &Platform) -> Result<Self, ApiError> {
        let Path(path) = Path::<HashMap<String, String>>::from_request_parts(parts, p)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, p)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        let param = |name: &str| path.get(name).map(String::as_str).unwrap_or_default();
        let d = find(p, param("product"), param("node"))?;
        Ok(Self {
            p: p.clone(),
            d,
            path,
            query,
        })
    }
}

impl Dev {
    /// A path parameter.
    fn param(&self, name: &str) -> String {
        self.path.get(name).cloned().unwrap_or_default()
    }

    /// A numeric query parameter.
    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        number(&self.query, name)
    }

    /// Sends a command and answers with the device's answer (`?timeout_ms=N`).
    async fn run(&self, command: Command) -> ApiResult {
        let timeout = self.number::<u64>("timeout_ms")?.map(Duration::from_millis);
        let answer = self.p.send_command(&self.d, command, timeout).await?;
        Ok(Json(json!({"answer": answer_json(&answer)})))
    }
}

/// A numeric query parameter.
fn number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    query
        .get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("?{name}: expected a non-negative integer, got {v:?}"),
                )
            })
        })
        .transpose()
}

/// A JSON body as `T`; errors name the field (`body.product_key: ...`).
fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            "body".to_owned()
        } else {
            format!("body.{at}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, format!("{at}: {}", e.inner()))
    })
}

/// A JSON body, or `default` when the body is empty.
fn parse_body_or<T: serde::de::DeserializeOwned>(body: &Bytes, default: T) -> Result<T, ApiError> {
    if body.is_empty() {
        Ok(default)
    } else {
        parse_body(body)
    }
}

async fn device(dev: Dev) -> Json<Value> {
    Json(device_json(&dev.p, &dev.d))
}

/// The body of `PATCH /api/devices/{product}/{node}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchDevice {
    enabled: bool,
}

async fn patch_device(dev: Dev, body: Bytes) -> ApiResult {
    let patch: PatchDevice = parse_body(&body)?;
    let (p, d) = (dev.p.clone(), dev.d.clone());
    blocking(move || p.set_enabled(d.product_id.as_str(), d.node_eui.as_str(), patch.enabled))
        .await?;
    Ok(Json(device_json(&dev.p, &dev.d)))
}

async fn properties(dev: Dev) -> Json<Value> {
    Json(json!(dev.p.latest_properties(&dev.d)))
}

async fn history(dev: Dev) -> Json<Value> {
    let property = dev.query.get("property").map(String::as_str);
    Json(Value::Array(
        dev.p
            .property_history(&dev.d, property)
            .into_iter()
            .map(|(id, t)| json!({"identifier": id, "value": t.value, "time": t.time}))
            .collect(),
    ))
}

async fn events(dev: Dev) -> Json<Value> {
    Json(json!(dev.p.events(&dev.d)))
}

async fn messages(dev: Dev) -> ApiResult {
    let after = dev.number::<u64>("after")?.unwrap_or(0);
    let limit = dev.number::<usize>("limit")?.unwrap_or(100);
    let list: Vec<Value> = dev
        .p
        .received_from(&dev.d)
        .into_iter()
        .filter(|r| r.seq > after)
        .take(limit)
        .map(|r| {
            json!({
                "seq": r.seq,
                "topic": r.topic(),
                "identifier": r.identifier,
                "HeaderCtrl": r.header_ctrl.code(),
                "MessageId": r.message_id,
                "Payload": r.payload,
                "raw": r.raw,
                "time": r.at_ms,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// `GET .../violations?after=SEQ&limit=N`: the rules the device broke, oldest first, with
/// how many there were in all and how many were dropped to keep the newest. Also answered
/// for a device of a registered product that is not registered itself but broke a rule (an
/// auth request refused because it is not pre-registered).
async fn violations(
    State(p): State<Platform>,
    Path((product, node)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("device {product}/{node} is not registered"),
        )
    };
    let d = match p.identity(&product, &node) {
        Some(d) => d,
        None => {
            let open_id = read(p.registry())
                .product(&product)
                .map(|p| p.open_id.to_string())
                .ok_or_else(not_found)?;
            DeviceIdentity::parse(&open_id, &product, &node)
                .ok()
                .filter(|d| p.violation_count(d) > 0)
                .ok_or_else(not_found)?
        }
    };
    let after = number::<u64>(&query, "after")?.unwrap_or(0);
    let limit = number::<usize>(&query, "limit")?.unwrap_or(usize::MAX);
    let list: Vec<Value> = p
        .violations(&d)
        .iter()
        .filter(|v| v.seq > after)
        .take(limit)
        .map(crate::platform::Violation::to_json)
        .collect();
    Ok(Json(json!({
        "total": p.violation_count(&d),
        "dropped": p.violations_dropped(&d),
        "violations": list,
    })))
}

async fn set_properties(dev: Dev, body: Bytes) -> ApiResult {
    dev.run(Command::SetProperties(parse_body(&body)?)).await
}

async fn ask_properties(dev: Dev, body: Bytes) -> ApiResult {
    dev.run(Command::AskProperties(parse_body(&body)?)).await
}

async fn call_service(dev: Dev, body: Bytes) -> ApiResult {
    let command = Command::CallService {
        service: dev.param("service"),
        params: parse_body_or(&body, json!({}))?,
    };
    dev.run(command).await
}

async fn passthrough(dev: Dev, body: Bytes) -> ApiResult {
    dev.run(Command::Passthrough(parse_body(&body)?)).await
}

async fn ask_config(dev: Dev) -> ApiResult {
    dev.run(Command::AskConfig).await
}

async fn set_config(dev: Dev, body: Bytes) -> ApiResult {
    dev.run(Command::SetConfig(parse_body(&body)?)).await
}

async fn ask_firmware(dev: Dev) -> ApiResult {
    dev.run(Command::AskFirmware).await
}

/// The body of `POST .../ota`: which module's task to notify now (default "default").
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NotifyNow {
    module: Option<String>,
}

async fn notify_ota(dev: Dev, body: Bytes) -> ApiResult {
    let now: NotifyNow = parse_body_or(&body, NotifyNow::default())?;
    let notify = dev
        .p
        .ota_notify_for(&dev.d, now.module.as_deref())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    let timeout = dev.number::<u64>("timeout_ms")?.map(Duration::from_millis);
    let answer = dev.p.send_ota(&dev.d, notify, timeout).await?;
    Ok(Json(json!({"answer": answer_json(&answer)})))
}

async fn rotate(dev: Dev) -> ApiResult {
    let grant = dev.p.rotate_key(&dev.d)?;
    Ok(Json(
        json!({"SessionID": grant.session_id, "Nonce": grant.nonce}),
    ))
}

async fn drop_device(dev: Dev) -> Json<Value> {
    Json(json!({"dropped": dev.p.drop_device(&dev.d)}))
}

fn firmware_of(p: &Platform) -> Result<&crate::firmware::Firmware, ApiError> {
    p.firmware().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no firmware server: start x-sim with a data directory (--data DIR)",
        )
    })
}

/// A refused input is the client's fault (400); a disk that fails is not (500).
fn firmware_error(e: FirmwareError) -> ApiError {
    let status = match e {
        FirmwareError::Io { .. } | FirmwareError::Index { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e)
}

async fn images(State(p): State<Platform>) -> ApiResult {
    Ok(Json(json!(firmware_of(&p)?.images())))
}

async fn upload(
    State(p): State<Platform>,
    Path((product, module, version, file)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let firmware = firmware_of(&p)?.clone();
    known_product(&p, &product)?;
    // Writing and fsyncing an image blocks: off the async workers.
    let image = tokio::task::spawn_blocking(move || {
        firmware.upload(&product, &module, &version, &file, &body)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?
    .map_err(firmware_error)?;
    Ok((StatusCode::CREATED, Json(json!(image))))
}

/// Firmware and OTA tasks belong to registered products.
fn known_product(p: &Platform, product: &str) -> Result<(), ApiError> {
    if read(p.registry()).product(product).is_some() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("product {product} is not registered"),
        ))
    }
}

async fn tasks(State(p): State<Platform>) -> ApiResult {
    Ok(Json(json!(firmware_of(&p)?.tasks())))
}

/// The body of `PUT /api/ota/{product}/{module}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTask {
    version: String,
}

async fn set_task(
    State(p): State<Platform>,
    Path((product, module)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let task: NewTask = parse_body(&body)?;
    known_product(&p, &product)?;
    let task = firmware_of(&p)?
        .set_task(&product, &module, &task.version)
        .map_err(firmware_error)?;
    Ok(Json(json!(task)))
}

async fn faults(State(p): State<Platform>) -> Json<Value> {
    let mut faults = json!({
        "silent": p.faults().silent(),
        "delay_ms": p.faults().delay().as_millis(),
        "busy_auths": p.faults().busy_auths(),
    });
    // Named only while history uploads are refused.
    if let Some(reason) = p.faults().refuse_history() {
        faults["refuse_history"] = json!(reason);
    }
    Json(faults)
}

/// The body of `PUT /api/faults`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetFaults {
    silent: Option<bool>,
    delay_ms: Option<u64>,
    busy_auths: Option<u32>,
    /// The reason to refuse history uploads with; "" stops refusing.
    refuse_history: Option<String>,
}

async fn set_faults(State(p): State<Platform>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let f: SetFaults = parse_body(&body)?;
    if let Some(silent) = f.silent {
        p.faults().set_silent(silent);
    }
    if let Some(ms) = f.delay_ms {
        p.faults().set_delay(Duration::from_millis(ms));
    }
    if let Some(n) = f.busy_auths {
        p.faults().set_busy_auths(n);
    }
    if let Some(reason) = f.refuse_history {
        p.faults()
            .set_refuse_history(Some(reason).filter(|r| !r.is_empty()));
    }
    Ok(faults(State(p)).await)
}
