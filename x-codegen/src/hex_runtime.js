// ---------------------------------------------------------------------------------------
// The codec. Everything above this line describes the product; everything below is the
// same for every product and follows docs/hex-format.md.
//
// Frame type bytes: 0x01 property report, 0x02 event report, 0x03 service reply (device to
// platform); 0x81 property set, 0x82 service call, 0x83 property ask (platform to device).
// ---------------------------------------------------------------------------------------

function fail(message) {
  throw new Error(message);
}

function hex2(b) {
  return (b < 16 ? "0" : "") + b.toString(16);
}

// --- numbers ---------------------------------------------------------------------------

var WIRE_SIZE = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, u64: 8, i64: 8, f32: 4, f64: 8 };
var TWO_53 = 9007199254740992;

function isIntWire(wire) {
  return wire !== "f32" && wire !== "f64";
}

function wireRange(wire) {
  var bits = WIRE_SIZE[wire] * 8;
  if (wire.charAt(0) === "u") {
    return [0, Math.pow(2, bits) - 1];
  }
  return [-Math.pow(2, bits - 1), Math.pow(2, bits - 1) - 1];
}

// Round half away from zero, as the Rust side does.
function roundHalfAway(x) {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

function roundHalfEven(x) {
  var f = Math.floor(x);
  var d = x - f;
  if (d > 0.5) {
    return f + 1;
  }
  if (d < 0.5) {
    return f;
  }
  return f % 2 === 0 ? f : f + 1;
}

// Splits a positive finite number into [exponent, significand] with 2^exponent <= v.
function exponentOf(v) {
  var e = Math.floor(Math.log(v) / Math.LN2);
  if (Math.pow(2, e) > v) {
    e--;
  }
  if (Math.pow(2, e + 1) <= v) {
    e++;
  }
  return e;
}

// The nearest IEEE 754 single to v, as a number (Math.fround, which ES5 lacks).
function fround(v) {
  if (v === 0 || !isFinite(v)) {
    return v;
  }
  var sign = v < 0 ? -1 : 1;
  var a = Math.abs(v);
  var e = exponentOf(a);
  var m;
  if (e < -126) {
    m = roundHalfEven(a / Math.pow(2, -149));
    return sign * m * Math.pow(2, -149);
  }
  m = roundHalfEven(a / Math.pow(2, e - 23));
  if (m === 16777216) {
    m = 8388608;
    e++;
  }
  if (e > 127) {
    return sign * Infinity;
  }
  return sign * m * Math.pow(2, e - 23);
}

// The shortest decimal that reads back as the same single (23.7, not 23.700000762939453).
function shortestF32(v) {
  if (v === 0 || !isFinite(v)) {
    return v;
  }
  for (var p = 1; p <= 9; p++) {
    var s = parseFloat(v.toPrecision(p));
    if (fround(s) === v) {
      return s;
    }
  }
  return v;
}

// Big-endian bytes of an IEEE 754 number (a single when single is true), by arithmetic, as
// ES5 has no typed arrays.
function floatBytes(v, single) {
  var mantBits = single ? 23 : 52;
  var bias = single ? 127 : 1023;
  var sign = v < 0 || (v === 0 && 1 / v < 0) ? 1 : 0;
  var a = Math.abs(single ? fround(v) : v);
  if (!isFinite(a)) {
    fail("value " + v + " does not fit " + (single ? "f32" : "f64"));
  }
  var e = 0;
  var m = 0;
  if (a !== 0) {
    e = exponentOf(a);
    if (e < 1 - bias) {
      m = a / Math.pow(2, 1 - bias - mantBits);
      e = 0;
    } else {
      m = (a / Math.pow(2, e) - 1) * Math.pow(2, mantBits);
      e += bias;
    }
  }
  if (single) {
    return wordBytes(sign * 2147483648 + e * 8388608 + m);
  }
  var hi = sign * 2147483648 + e * 1048576 + Math.floor(m / 4294967296);
  return wordBytes(hi).concat(wordBytes(m % 4294967296));
}

// The four big-endian bytes of a 32-bit unsigned number.
function wordBytes(u) {
  var out = [];
  for (var i = 0; i < 4; i++) {
    out.unshift(u % 256);
    u = Math.floor(u / 256);
  }
  return out;
}

function bytesWord(b, start) {
  return ((b[start] * 256 + b[start + 1]) * 256 + b[start + 2]) * 256 + b[start + 3];
}

// The number held by big-endian IEEE 754 bytes (4 for a single, 8 for a double).
function bytesFloat(b, single) {
  var mantBits = single ? 23 : 52;
  var bias = single ? 127 : 1023;
  var hi = bytesWord(b, 0);
  var sign = hi >= 2147483648 ? -1 : 1;
  var e;
  var m;
  if (single) {
    e = Math.floor(hi / 8388608) % 256;
    m = hi % 8388608;
  } else {
    e = Math.floor(hi / 1048576) % 2048;
    m = (hi % 1048576) * 4294967296 + bytesWord(b, 4);
  }
  if (e === (single ? 255 : 2047)) {
    return m === 0 ? sign * Infinity : NaN;
  }
  if (e === 0) {
    return sign * m * Math.pow(2, 1 - bias - mantBits);
  }
  return sign * (1 + m / Math.pow(2, mantBits)) * Math.pow(2, e - bias);
}

// --- reading -----------------------------------------------------------------------------

function Reader(bytes) {
  this.bytes = bytes;
  this.pos = 0;
}

Reader.prototype.need = function (n, what) {
  if (this.pos + n > this.bytes.length) {
    fail("truncated at byte " + this.pos + ": " + what + " needs " +
      (this.pos + n - this.bytes.length) + " more byte(s)");
  }
};

Reader.prototype.u8 = function (what) {
  this.need(1, what);
  return this.bytes[this.pos++];
};

// n bytes, most significant first.
Reader.prototype.take = function (n, what) {
  this.need(n, what);
  var out = this.bytes.slice(this.pos, this.pos + n);
  this.pos += n;
  if (MODEL.littleEndian) {
    out.reverse();
  }
  return out;
};

Reader.prototype.atEnd = function () {
  return this.pos >= this.bytes.length;
};

Reader.prototype.finish = function () {
  if (!this.atEnd()) {
    fail((this.bytes.length - this.pos) + " trailing byte(s) at byte " + this.pos +
      " after a complete frame");
  }
};

function readRaw(r, wire, what) {
  var at = r.pos;
  var b = r.take(WIRE_SIZE[wire], what);
  if (wire === "f32" || wire === "f64") {
    var f = bytesFloat(b, wire === "f32");
    if (!isFinite(f)) {
      fail(what + ": the " + wire + " at byte " + at + " is not a finite number");
    }
    return wire === "f32" ? shortestF32(f) : f;
  }
  var v = 0;
  for (var i = 0; i < b.length; i++) {
    v = v * 256 + b[i];
  }
  if (wire.charAt(0) === "i" && b[0] >= 128) {
    v -= Math.pow(2, 8 * b.length);
  }
  if (Math.abs(v) > TWO_53) {
    fail(what + ": " + wire + " at byte " + at + " is beyond 2^53, which this script cannot hold exactly");
  }
  return v;
}

function checkNumber(v, t, what) {
  if (t.min !== undefined && v < t.min) {
    fail(what + ": " + v + " is below the minimum " + t.min);
  }
  if (t.max !== undefined && v > t.max) {
    fail(what + ": " + v + " is above the maximum " + t.max);
  }
  if (t.step !== undefined && t.step > 0) {
    var base = t.min !== undefined ? t.min : 0;
    var steps = (v - base) / t.step;
    if (Math.abs(steps - Math.round(steps)) > 1e-9 * Math.max(Math.abs(steps), 1)) {
      fail(what + ": " + v + " is not a multiple of the step " + t.step + " from " + base);
    }
  }
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
function utf8Decode(bytes, at, what) {
  var bad = function () {
    fail(what + ": text at byte " + at + " is not valid UTF-8");
  };
  var out = "";
  var i = 0;
  while (i < bytes.length) {
    var b = bytes[i];
    var n;
    var c;
    if (b < 0x80) {
      n = 0;
      c = b;
    } else if (b >= 0xc2 && b < 0xe0) {
      n = 1;
      c = b - 0xc0;
    } else if (b >= 0xe0 && b < 0xf0) {
      n = 2;
      c = b - 0xe0;
    } else if (b >= 0xf0 && b < 0xf5) {
      n = 3;
      c = b - 0xf0;
    } else {
      bad();
    }
    if (i + n >= bytes.length && n > 0) {
      bad();
    }
    for (var k = 1; k <= n; k++) {
      var cont = bytes[i + k];
      if (cont < 0x80 || cont > 0xbf) {
        bad();
      }
      c = c * 64 + (cont - 0x80);
    }
    if ((n === 2 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) || (n === 3 && (c < 0x10000 || c > 0x10ffff))) {
      bad();
    }
    if (c >= 0x10000) {
      c -= 0x10000;
      out += String.fromCharCode(0xd800 + Math.floor(c / 1024), 0xdc00 + (c % 1024));
    } else {
      out += String.fromCharCode(c);
    }
    i += n + 1;
  }
  return out;
}

function readValue(r, t, what) {
  var at = r.pos;
  var v;
  switch (t.kind) {
    case "int":
    case "float":
    case "double":
      v = readRaw(r, t.wire, what);
      if (isIntWire(t.wire) && (t.scale !== 1 || t.offset !== 0)) {
        v = parseFloat((v * t.scale + t.offset).toFixed(t.decimals));
      }
      if (t.kind === "float") {
        v = shortestF32(fround(v));
      }
      if (t.kind === "int" && (v % 1 !== 0 || v < -2147483648 || v > 2147483647)) {
        fail(what + ": " + v + " is out of range (at byte " + at + ", not a 32-bit integer)");
      }
      checkNumber(v, t, what);
      return v;
    case "bool":
      v = r.u8(what);
      if (v > 1) {
        fail(what + ": bool byte " + v + " at byte " + at + " is not 0 or 1");
      }
      return v;
    case "enum":
      v = readRaw(r, t.wire, what);
      if (t.keys.indexOf(v) < 0) {
        fail(what + ": unknown enum key " + v + " at byte " + at);
      }
      return v;
    case "date":
      return readRaw(r, t.wire, what);
    case "text":
      var n = t.fixed !== undefined ? t.fixed : r.u8(what);
      var textAt = r.pos;
      r.need(n, what);
      var bytes = r.bytes.slice(r.pos, r.pos + n);
      r.pos += n;
      if (t.fixed !== undefined) {
        while (bytes.length > 0 && bytes[bytes.length - 1] === 0) {
          bytes.pop();
        }
      }
      if (t.length !== undefined && bytes.length > t.length) {
        fail(what + ": text of " + bytes.length + " bytes is longer than the maximum " + t.length);
      }
      return utf8Decode(bytes, textAt, what);
    case "struct":
      v = {};
      for (var i = 0; i < t.fields.length; i++) {
        var f = t.fields[i];
        v[f.identifier] = readValue(r, f.type, f.identifier);
      }
      return v;
    case "array":
      var count = r.u8(what);
      if (t.size !== undefined && count > t.size) {
        fail(what + ": " + count + " elements, at most " + t.size + " allowed");
      }
      v = [];
      for (var j = 0; j < count; j++) {
        v.push(readValue(r, t.item, what));
      }
      return v;
  }
  fail("unknown type " + t.kind);
}

// --- writing -----------------------------------------------------------------------------

function Writer() {
  this.bytes = [];
}

Writer.prototype.u8 = function (b) {
  this.bytes.push(b);
};

// Bytes given most significant first, written in the model's byte order.
Writer.prototype.put = function (bigEndian) {
  if (MODEL.littleEndian) {
    bigEndian.reverse();
  }
  for (var i = 0; i < bigEndian.length; i++) {
    this.bytes.push(bigEndian[i]);
  }
};

function writeRaw(w, v, wire, what) {
  if (wire === "f32" || wire === "f64") {
    w.put(floatBytes(v, wire === "f32"));
    return;
  }
  var range = wireRange(wire);
  if (v < range[0] || v > range[1]) {
    fail(what + ": " + v + " is out of range (does not fit " + wire + ")");
  }
  var size = WIRE_SIZE[wire];
  var u = v < 0 ? v + Math.pow(2, 8 * size) : v;
  var out = [];
  for (var i = 0; i < size; i++) {
    out.unshift(u % 256);
    u = Math.floor(u / 256);
  }
  w.put(out);
}

function utf8Encode(s) {
  var out = [];
  for (var i = 0; i < s.length; i++) {
    var c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      var low = s.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        c = 0x10000 + (c - 0xd800) * 1024 + (low - 0xdc00);
        i++;
      }
    }
    if (c < 0x80) {
      out.push(c);
    } else if (c < 0x800) {
      out.push(0xc0 + Math.floor(c / 64), 0x80 + (c % 64));
    } else if (c < 0x10000) {
      out.push(0xe0 + Math.floor(c / 4096), 0x80 + (Math.floor(c / 64) % 64), 0x80 + (c % 64));
    } else {
      out.push(0xf0 + Math.floor(c / 262144), 0x80 + (Math.floor(c / 4096) % 64),
        0x80 + (Math.floor(c / 64) % 64), 0x80 + (c % 64));
    }
  }
  return out;
}

// Whether v is an array, from whichever realm it comes: a host binding or another context
// may pass arrays made by another realm's Array, for which `instanceof Array` is false.
function isArray(v) {
  return Object.prototype.toString.call(v) === "[object Array]";
}

function describe(v) {
  var s = typeof v === "string" ? "\"" + v + "\"" : String(v);
  return s.length > 40 ? s.substring(0, 40) + "..." : s;
}

// A number from a JSON number or a numeric string, as the platform may send either.
function toNumber(v, what) {
  var n = typeof v === "number" ? v : typeof v === "string" && /^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(v) ? parseFloat(v) : NaN;
  if (!isFinite(n)) {
    fail(what + ": expected a number, got " + describe(v));
  }
  return n;
}

function toInteger(v, what) {
  var n = toNumber(v, what);
  if (n % 1 !== 0) {
    fail(what + ": expected an integer, got " + describe(v));
  }
  return n;
}

function writeValue(w, v, t, what) {
  var n;
  switch (t.kind) {
    case "int":
    case "float":
    case "double":
      n = t.kind === "int" ? toInteger(v, what) : toNumber(v, what);
      if (t.kind === "int" && (n < -2147483648 || n > 2147483647)) {
        fail(what + ": " + n + " is not a 32-bit integer");
      }
      if (t.kind === "float") {
        n = shortestF32(fround(n));
      }
      checkNumber(n, t, what);
      if (isIntWire(t.wire)) {
        n = roundHalfAway((n - t.offset) / t.scale);
      }
      writeRaw(w, n, t.wire, what);
      return;
    case "bool":
      if (v === true || v === 1 || v === "1" || v === "true") {
        w.u8(1);
      } else if (v === false || v === 0 || v === "0" || v === "false") {
        w.u8(0);
      } else {
        fail(what + ": expected 0 or 1, got " + describe(v));
      }
      return;
    case "enum":
      n = toInteger(v, what);
      if (t.keys.indexOf(n) < 0) {
        fail(what + ": unknown enum key " + n + " (allowed: " + t.keys.join(", ") + ")");
      }
      writeRaw(w, n, t.wire, what);
      return;
    case "date":
      writeRaw(w, toInteger(v, what), t.wire, what);
      return;
    case "text":
      if (typeof v !== "string") {
        fail(what + ": expected a string, got " + describe(v));
      }
      var bytes = utf8Encode(v);
      var max = t.fixed !== undefined ? t.fixed : 255;
      if (t.length !== undefined && bytes.length > t.length) {
        fail(what + ": text of " + bytes.length + " bytes is longer than the maximum " + t.length);
      }
      if (bytes.length > max) {
        fail(what + ": " + bytes.length + " bytes do not fit (at most " + max + ")");
      }
      if (t.fixed === undefined) {
        w.u8(bytes.length);
      }
      for (var i = 0; i < bytes.length; i++) {
        w.u8(bytes[i]);
      }
      for (var k = bytes.length; t.fixed !== undefined && k < t.fixed; k++) {
        w.u8(0);
      }
      return;
    case "struct":
      if (typeof v !== "object" || v === null || isArray(v)) {
        fail(what + ": expected an object, got " + describe(v));
      }
      for (var key in v) {
        if (Object.prototype.hasOwnProperty.call(v, key) && !findByIdentifier(t.fields, key)) {
          fail(what + ": unknown field \"" + key + "\"");
        }
      }
      for (var j = 0; j < t.fields.length; j++) {
        var f = t.fields[j];
        if (!Object.prototype.hasOwnProperty.call(v, f.identifier)) {
          fail(what + ": missing field \"" + f.identifier + "\"");
        }
        writeValue(w, v[f.identifier], f.type, f.identifier);
      }
      return;
    case "array":
      if (!isArray(v)) {
        fail(what + ": expected a list, got " + describe(v));
      }
      if ((t.size !== undefined && v.length > t.size) || v.length > 255) {
        fail(what + ": " + v.length + " elements, at most " + (t.size !== undefined ? t.size : 255) + " allowed");
      }
      w.u8(v.length);
      for (var e = 0; e < v.length; e++) {
        writeValue(w, v[e], t.item, what);
      }
      return;
  }
  fail("unknown type " + t.kind);
}

// --- the model's entries -----------------------------------------------------------------

function findByIdentifier(list, identifier) {
  for (var i = 0; i < list.length; i++) {
    if (list[i].identifier === identifier) {
      return list[i];
    }
  }
  return null;
}

function findById(list, id) {
  for (var i = 0; i < list.length; i++) {
    if (list[i].id === id) {
      return list[i];
    }
  }
  return null;
}

function readParams(r, params) {
  var out = {};
  for (var i = 0; i < params.length; i++) {
    out[params[i].identifier] = readValue(r, params[i].type, params[i].identifier);
  }
  return out;
}

// Accepts an array of numbers (-128..255) or a Uint8Array; returns plain bytes 0..255.
function normalize(bytes) {
  if (bytes === null || typeof bytes !== "object" || typeof bytes.length !== "number") {
    fail("expected an array of bytes, got " + describe(bytes));
  }
  var out = [];
  for (var i = 0; i < bytes.length; i++) {
    var b = bytes[i];
    if (typeof b !== "number" || b % 1 !== 0 || b < -128 || b > 255) {
      fail("byte " + i + " is " + describe(b) + ", not a number from -128 to 255");
    }
    out.push(b < 0 ? b + 256 : b);
  }
  return out;
}

/**
 * Device bytes to the equivalent JSON-product message.
 * 0x01 -> {"HeaderCtrl":16,"Payload":{..properties}}
 * 0x02 -> {"HeaderCtrl":17,"Event":"<identifier>","Payload":{..outputs}}
 * 0x03 -> {"HeaderCtrl":21,"Service":"<identifier>","Payload":{"Code":"200","Data":{..}}}
 *         or {"Code":"4001"} when the device reports failure.
 * Throws an Error that says what is wrong with malformed bytes.
 */
function rawDataToProtocol(bytes) {
  var r = new Reader(normalize(bytes));
  if (r.atEnd()) {
    fail("empty frame: no frame type byte");
  }
  var type = r.u8("frame type");
  var payload = {};
  var entry;
  var i;
  if (type === 0x01) {
    if (MODEL.mode === "positional") {
      for (i = 0; i < MODEL.properties.length; i++) {
        entry = MODEL.properties[i];
        payload[entry.identifier] = readValue(r, entry.type, entry.identifier);
      }
    } else {
      while (!r.atEnd()) {
        var at = r.pos;
        var id = r.u8("property id");
        entry = findById(MODEL.properties, id);
        if (!entry) {
          fail("unknown property id " + id + " at byte " + at);
        }
        if (Object.prototype.hasOwnProperty.call(payload, entry.identifier)) {
          fail("property " + entry.identifier + " appears twice (byte " + at + ")");
        }
        payload[entry.identifier] = readValue(r, entry.type, entry.identifier);
      }
    }
    r.finish();
    return { HeaderCtrl: 16, Payload: payload };
  }
  if (type === 0x02) {
    var eventAt = r.pos;
    var eventId = r.u8("event id");
    entry = findById(MODEL.events, eventId);
    if (!entry) {
      fail("unknown event id " + eventId + " at byte " + eventAt);
    }
    payload = readParams(r, entry.outputs);
    r.finish();
    return { HeaderCtrl: 17, Event: entry.identifier, Payload: payload };
  }
  if (type === 0x03) {
    var serviceAt = r.pos;
    var serviceId = r.u8("service id");
    entry = findById(MODEL.services, serviceId);
    if (!entry) {
      fail("unknown service id " + serviceId + " at byte " + serviceAt);
    }
    var resultAt = r.pos;
    var result = r.u8("service result");
    if (result === 1) {
      r.finish();
      return { HeaderCtrl: 21, Service: entry.identifier, Payload: { Code: "4001" } };
    }
    if (result !== 0) {
      fail("service result byte " + result + " at byte " + resultAt + " is not 0 (ok) or 1 (failed)");
    }
    var data = readParams(r, entry.outputs);
    r.finish();
    return { HeaderCtrl: 21, Service: entry.identifier, Payload: { Code: "200", Data: data } };
  }
  fail("frame type 0x" + hex2(type) + " at byte 0 is not a device frame (0x01, 0x02 or 0x03)");
}

/**
 * A platform command to device bytes (an array of numbers 0..255).
 * {"HeaderCtrl":20,"Payload":{"params":[{"identify":..,"value":..}]}}  -> 0x81 property set
 * {"HeaderCtrl":21,"Payload":{"serviceIdentify":..,"params":{..}}}       -> 0x82 service call
 * {"HeaderCtrl":23,"Payload":{"params":["identifier", ..]}}              -> 0x83 property ask
 * Values may be strings, as on the JSON path. Throws an Error that says what is wrong.
 */
function protocolToRawData(obj) {
  if (obj === null || typeof obj !== "object") {
    fail("expected a message object, got " + describe(obj));
  }
  var p = obj.Payload;
  if (p === null || typeof p !== "object") {
    fail("Payload: expected an object, got " + describe(p));
  }
  var w = new Writer();
  var i;
  var entry;
  if (obj.HeaderCtrl === 20) {
    if (!isArray(p.params)) {
      fail("Payload.params: expected a list of {identify, value}");
    }
    w.u8(0x81);
    var seen = {};
    for (i = 0; i < p.params.length; i++) {
      var param = p.params[i];
      var name = param && param.identify;
      entry = typeof name === "string" ? findByIdentifier(MODEL.properties, name) : null;
      if (!entry) {
        fail("params[" + i + "]: unknown property " + describe(name));
      }
      if (!entry.writable) {
        fail(name + ": read-only property");
      }
      if (seen[name]) {
        fail(name + ": given more than once");
      }
      seen[name] = true;
      if (!Object.prototype.hasOwnProperty.call(param, "value")) {
        fail(name + ": missing value");
      }
      w.u8(entry.id);
      writeValue(w, param.value, entry.type, name);
    }
    return w.bytes;
  }
  if (obj.HeaderCtrl === 21) {
    entry = typeof p.serviceIdentify === "string" ? findByIdentifier(MODEL.services, p.serviceIdentify) : null;
    if (!entry) {
      fail("serviceIdentify: unknown service " + describe(p.serviceIdentify));
    }
    var params = p.params === undefined ? {} : p.params;
    if (params === null || typeof params !== "object" || isArray(params)) {
      fail("Payload.params: expected an object of inputs");
    }
    for (var key in params) {
      if (Object.prototype.hasOwnProperty.call(params, key) && !findByIdentifier(entry.inputs, key)) {
        fail(key + ": unknown parameter");
      }
    }
    w.u8(0x82);
    w.u8(entry.id);
    for (i = 0; i < entry.inputs.length; i++) {
      var input = entry.inputs[i];
      if (!Object.prototype.hasOwnProperty.call(params, input.identifier)) {
        fail(input.identifier + ": missing input");
      }
      writeValue(w, params[input.identifier], input.type, input.identifier);
    }
    return w.bytes;
  }
  if (obj.HeaderCtrl === 23) {
    if (!isArray(p.params)) {
      fail("Payload.params: expected a list of property identifiers");
    }
    w.u8(0x83);
    for (i = 0; i < p.params.length; i++) {
      entry = findByIdentifier(MODEL.properties, p.params[i]);
      if (!entry) {
        fail(describe(p.params[i]) + ": unknown property");
      }
      w.u8(entry.id);
    }
    return w.bytes;
  }
  fail("HeaderCtrl " + describe(obj.HeaderCtrl) + " is not a platform command this script encodes (20, 21 or 23)");
}

if (typeof module !== "undefined" && module.exports) {
  module.exports = { rawDataToProtocol: rawDataToProtocol, protocolToRawData: protocolToRawData };
}
