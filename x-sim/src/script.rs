//! Runs a HEX product's parsing script the way the platform does: `rawDataToProtocol` on the
//! device's bytes, `protocolToRawData` on platform commands. The engine is boa, a maintained
//! pure-Rust JavaScript engine (no C toolchain, no network at build time), with loop and
//! recursion limits so that a hand-written script cannot hang the simulator.

use std::collections::HashMap;
use std::sync::{OnceLock, mpsc};

use boa_engine::{Context, Source};
use serde_json::Value;

/// Why a script could not be loaded or a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The script does not parse or throws while loading.
    #[error("parsing script does not load: {0}")]
    Load(String),
    /// The script lacks one of the two functions.
    #[error("parsing script does not define the function {0}")]
    Missing(&'static str),
    /// The function threw (malformed input, as the script judged it).
    #[error("{function} threw: {message}")]
    Threw {
        /// `rawDataToProtocol` or `protocolToRawData`.
        function: &'static str,
        /// The error's message.
        message: String,
    },
    /// The function returned something that is not what the convention says.
    #[error("{function} returned {what}")]
    BadReturn {
        /// The function.
        function: &'static str,
        /// What it returned, and why that is wrong.
        what: String,
    },
}

/// A loaded parsing script.
#[derive(Debug)]
pub struct ParsingScript {
    context: Context,
}

const RAW_TO_PROTOCOL: &str = "rawDataToProtocol";
const PROTOCOL_TO_RAW: &str = "protocolToRawData";

impl ParsingScript {
    /// Loads a script and checks that it defines both functions.
    ///
    /// # Errors
    /// [`ScriptError::Load`] or [`ScriptError::Missing`].
    pub fn load(source: &str) -> Result<Self, ScriptError> {
        let mut context = Context::default();
        context
            .runtime_limits_mut()
            .set_loop_iteration_limit(50_000_000);
        context.runtime_limits_mut().set_recursion_limit(256);
        context
            .eval(Source::from_bytes(source))
            .map_err(|e| ScriptError::Load(message(&e, &mut context)))?;
        let mut script = Self { context };
        for name in [RAW_TO_PROTOCOL, PROTOCOL_TO_RAW] {
            if script.eval_string(&format!("typeof {name}")).as_deref() != Ok("function") {
                return Err(ScriptError::Missing(name));
            }
        }
        Ok(script)
    }

    /// `rawDataToProtocol` on device bytes.
    ///
    /// # Errors
    /// What the script threw, or a result that is not an object.
    pub fn raw_data_to_protocol(&mut self, bytes: &[u8]) -> Result<Value, ScriptError> {
        let arg = Value::from(bytes.iter().map(|b| Value::from(*b)).collect::<Vec<_>>());
        self.raw_data_to_protocol_js(&arg.to_string())
    }

    /// `rawDataToProtocol` on any JavaScript expression (a signed array, a `Uint8Array`,
    /// or something malformed), for tests of the script's input handling.
    ///
    /// # Errors
    /// What the script threw, or a result that is not an object.
    pub fn raw_data_to_protocol_js(&mut self, arg: &str) -> Result<Value, ScriptError> {
        let text = self.call(RAW_TO_PROTOCOL, arg)?;
        match serde_json::from_str::<Value>(&text) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(ScriptError::BadReturn {
                function: RAW_TO_PROTOCOL,
                what: format!("{text}, not an object"),
            }),
        }
    }

    /// `protocolToRawData` on a platform command.
    ///
    /// # Errors
    /// What the script threw, or a result that is not an array of bytes 0..255.
    pub fn protocol_to_raw_data(&mut self, message: &Value) -> Result<Vec<u8>, ScriptError> {
        let text = self.call(PROTOCOL_TO_RAW, &message.to_string())?;
        let bad = |what: String| ScriptError::BadReturn {
            function: PROTOCOL_TO_RAW,
            what,
        };
        let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&text) else {
            return Err(bad(format!("{text}, not an array")));
        };
        items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| bad(format!("{text}: {v} is not a byte 0..255")))
            })
            .collect()
    }

    /// Calls `function(arg)` and returns `JSON.stringify` of the result.
    fn call(&mut self, function: &'static str, arg: &str) -> Result<String, ScriptError> {
        let code = format!("JSON.stringify({function}({arg}))");
        self.eval_string(&code)
            .map_err(|message| ScriptError::Threw { function, message })
    }

    fn eval_string(&mut self, code: &str) -> Result<String, String> {
        match self.context.eval(Source::from_bytes(code)) {
            Ok(v) => Ok(v
                .as_string()
                .map(|s| s.to_std_string_escaped())
                .unwrap_or_else(|| "undefined".to_owned())),
            Err(e) => Err(message(&e, &mut self.context)),
        }
    }
}

/// The message of a thrown error (`Error.message`), or the error as text.
fn message(e: &boa_engine::JsError, context: &mut Context) -> String {
    match e.try_native(context) {
        Ok(native) => native.message().to_string(),
        Err(_) => e.to_string(),
    }
}

/// A job for the script thread.
type Job = Box<dyn FnOnce(&mut HashMap<String, ParsingScript>) + Send>;

/// Most scripts kept loaded; past this the cache starts again.
const MAX_LOADED: usize = 32;

/// How many script calls may wait for the script thread; beyond it, callers wait for room.
/// (The platform calls scripts from blocking threads, never from its async workers.)
const SCRIPT_QUEUE: usize = 256;

/// The thread that owns the loaded scripts. A boa context is neither `Send` nor safe to drop
/// during thread-local destruction (its garbage collector lives in a thread-local itself),
/// so the contexts live on one long-lived thread that never exits, and callers send it
/// work. Loading parses and runs the whole script, so each script is loaded once.
fn script_thread() -> Option<&'static mpsc::SyncSender<Job>> {
    static RUNNER: OnceLock<Option<mpsc::SyncSender<Job>>> = OnceLock::new();
    RUNNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::sync_channel::<Job>(SCRIPT_QUEUE);
            std::thread::Builder::new()
                .name("x-sim-scripts".into())
                .spawn(move || {
                    let mut loaded = HashMap::new();
                    while let Ok(job) = rx.recv() {
                        job(&mut loaded);
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Runs `f` on the script `source`, loaded once and kept (on the script thread). Blocks
/// until it ran: async callers call it from `tokio::task::spawn_blocking`.
///
/// # Errors
/// The script does not load, or the script thread is not available.
pub fn with_script<R: Send + 'static>(
    source: &str,
    f: impl FnOnce(&mut ParsingScript) -> R + Send + 'static,
) -> Result<R, ScriptError> {
    let unavailable = || ScriptError::Load("the script thread is not running".to_owned());
    let runner = script_thread().ok_or_else(unavailable)?;
    let (done, result) = mpsc::sync_channel(1);
    let source = source.to_owned();
    let job: Job = Box::new(move |loaded| {
        if !loaded.contains_key(&source) {
            if loaded.len() >= MAX_LOADED {
                loaded.clear();
            }
            match ParsingScript::load(&source) {
                Ok(script) => {
                    loaded.insert(source.clone(), script);
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                    return;
                }
            }
        }
        let out = match loaded.get_mut(&source) {
            Some(script) => Ok(f(script)),
            None => Err(ScriptError::Load("script cache".to_owned())),
        };
        let _ = done.send(out);
    });
    runner.send(job).map_err(|_| unavailable())?;
    result.recv().map_err(|_| unavailable())?
}
