//! Custom scalars, and conversions between JSON and juniper values.
//!
//! Column values are resolved straight from their JSON form (API.md section 4), so these scalar
//! types only carry names and input parsing; their `to_output` is never on the event path.

use juniper::{DefaultScalarValue, GraphQLScalar, InputValue, Object, Scalar, ScalarValue, Value};
use walcast_model::{Column, Kind};

/// Accepts any scalar input as text: a BigInt may be written `5` or `"5"`.
fn lenient(v: &Scalar<impl ScalarValue>) -> Result<String, Box<str>> {
    v.try_to_string()
        .or_else(|| v.try_to_int().map(|i| i.to_string()))
        .or_else(|| v.try_to_float().map(|f| f.to_string()))
        .or_else(|| v.try_to_bool().map(|b| b.to_string()))
        .ok_or_else(|| "expected a string or a number".into())
}

macro_rules! text_scalar {
    ($ty:ident, $name:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug, GraphQLScalar)]
        #[graphql(name = $name, description = $doc, parse_token(String, i32, f64))]
        pub struct $ty(pub String);

        impl $ty {
            fn to_output(&self) -> &str {
                &self.0
            }

            fn from_input(v: &Scalar<impl ScalarValue>) -> Result<Self, Box<str>> {
                lenient(v).map($ty)
            }
        }
    };
}

text_scalar!(
    BigInt,
    "BigInt",
    "A 64-bit integer, as a string so no precision is lost."
);
text_scalar!(
    Decimal,
    "Decimal",
    "An arbitrary-precision decimal (numeric, money), as a string."
);
text_scalar!(Json, "JSON", "A JSON value. As input: JSON-encoded text.");
text_scalar!(
    DateTime,
    "DateTime",
    "A timestamp in ISO 8601 / RFC 3339 form."
);
text_scalar!(Date, "Date", "A calendar date, YYYY-MM-DD.");
text_scalar!(Time, "Time", "A time of day, HH:MM:SS[.ffffff][+zone].");
text_scalar!(
    Interval,
    "Interval",
    "A duration in ISO 8601 form (P1DT2H)."
);
text_scalar!(Bytes, "Bytes", "Binary data, base64-encoded.");
text_scalar!(Uuid, "UUID", "A UUID in canonical text form.");

/// The GraphQL scalar of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    Id,
    Int,
    Float,
    Boolean,
    String,
    BigInt,
    Decimal,
    Json,
    DateTime,
    Date,
    Time,
    Interval,
    Bytes,
    Uuid,
}

impl ScalarType {
    pub fn of(column: &Column, is_single_pk: bool) -> ScalarType {
        if is_single_pk && !column.ty.array {
            return ScalarType::Id;
        }
        match column.ty.kind {
            Kind::Int2 | Kind::Int4 => ScalarType::Int,
            Kind::Int8 => ScalarType::BigInt,
            Kind::Numeric | Kind::Money => ScalarType::Decimal,
            Kind::Float4 | Kind::Float8 => ScalarType::Float,
            Kind::Bool => ScalarType::Boolean,
            Kind::Uuid => ScalarType::Uuid,
            Kind::Json | Kind::Jsonb => ScalarType::Json,
            Kind::TimestampTz | Kind::Timestamp => ScalarType::DateTime,
            Kind::Date => ScalarType::Date,
            Kind::Time | Kind::TimeTz => ScalarType::Time,
            Kind::Interval => ScalarType::Interval,
            Kind::Bytea => ScalarType::Bytes,
            Kind::Text | Kind::Enum | Kind::Other => ScalarType::String,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScalarType::Id => "ID",
            ScalarType::Int => "Int",
            ScalarType::Float => "Float",
            ScalarType::Boolean => "Boolean",
            ScalarType::String => "String",
            ScalarType::BigInt => "BigInt",
            ScalarType::Decimal => "Decimal",
            ScalarType::Json => "JSON",
            ScalarType::DateTime => "DateTime",
            ScalarType::Date => "Date",
            ScalarType::Time => "Time",
            ScalarType::Interval => "Interval",
            ScalarType::Bytes => "Bytes",
            ScalarType::Uuid => "UUID",
        }
    }
}

/// JSON to a juniper output value. Integers outside i32 become strings (GraphQL Int is 32-bit).
pub fn json_to_value(v: &serde_json::Value) -> Value<DefaultScalarValue> {
    match v {
        serde_json::Value::Null => Value::null(),
        serde_json::Value::Bool(b) => Value::scalar(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64().and_then(|i| i32::try_from(i).ok()) {
                Value::scalar(i)
            } else if n.is_f64() {
                Value::scalar(n.as_f64().unwrap_or(f64::NAN))
            } else {
                Value::scalar(n.to_string())
            }
        }
        serde_json::Value::String(s) => Value::scalar(s.clone()),
        serde_json::Value::Array(items) => Value::list(items.iter().map(json_to_value).collect()),
        serde_json::Value::Object(map) => {
            let mut obj = Object::with_capacity(map.len());
            for (k, v) in map {
                obj.add_field(k.as_str(), json_to_value(v));
            }
            Value::object(obj)
        }
    }
}

/// A juniper input value (variables already substituted) to JSON, for the filter parser.
pub fn input_to_json(v: &InputValue<DefaultScalarValue>) -> serde_json::Value {
    match v {
        InputValue::Null | InputValue::Variable(_) => serde_json::Value::Null,
        InputValue::Scalar(s) => match s {
            DefaultScalarValue::Int(i) => serde_json::Value::from(*i),
            DefaultScalarValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            DefaultScalarValue::String(s) => serde_json::Value::String(s.clone()),
            DefaultScalarValue::Boolean(b) => serde_json::Value::Bool(*b),
        },
        InputValue::Enum(e) => serde_json::Value::String(e.clone()),
        InputValue::List(items) => {
            serde_json::Value::Array(items.iter().map(|i| input_to_json(&i.item)).collect())
        }
        InputValue::Object(fields) => serde_json::Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.item.clone(), input_to_json(&v.item)))
                .collect(),
        ),
    }
}

/// How a scalar is wrapped in a field or argument type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `T!`
    Required,
    /// `T`
    Optional,
    /// `[T]!` (array columns that are NOT NULL)
    List,
    /// `[T]` (nullable array columns, array inputs)
    OptionalList,
    /// `[T!]` (`_in` filter lists)
    OptionalListOfRequired,
}

/// Runs `$body` with `$t` the Rust type of a scalar: one place maps scalars to types.
macro_rules! with_scalar {
    ($scalar:expr, $t:ident => $body:expr) => {
        match $scalar {
            ScalarType::Id => {
                type $t = juniper::ID;
                $body
            }
            ScalarType::Int => {
                type $t = i32;
                $body
            }
            ScalarType::Float => {
                type $t = f64;
                $body
            }
            ScalarType::Boolean => {
                type $t = bool;
                $body
            }
            ScalarType::String => {
                type $t = String;
                $body
            }
            ScalarType::BigInt => {
                type $t = BigInt;
                $body
            }
            ScalarType::Decimal => {
                type $t = Decimal;
                $body
            }
            ScalarType::Json => {
                type $t = Json;
                $body
            }
            ScalarType::DateTime => {
                type $t = DateTime;
                $body
            }
            ScalarType::Date => {
                type $t = Date;
                $body
            }
            ScalarType::Time => {
                type $t = Time;
                $body
            }
            ScalarType::Interval => {
                type $t = Interval;
                $body
            }
            ScalarType::Bytes => {
                type $t = Bytes;
                $body
            }
            ScalarType::Uuid => {
                type $t = Uuid;
                $body
            }
        }
    };
}

/// An output field of a scalar type.
pub fn field(
    r: &mut juniper::Registry<DefaultScalarValue>,
    name: juniper::ArcStr,
    scalar: ScalarType,
    shape: Shape,
) -> juniper::meta::Field<DefaultScalarValue> {
    with_scalar!(scalar, T => match shape {
        Shape::Required => r.field::<T>(name, &()),
        Shape::Optional => r.field::<Option<T>>(name, &()),
        Shape::List => r.field::<Vec<Option<T>>>(name, &()),
        Shape::OptionalList => r.field::<Option<Vec<Option<T>>>>(name, &()),
        Shape::OptionalListOfRequired => r.field::<Option<Vec<T>>>(name, &()),
    })
}

/// An argument (or input field) of a scalar type.
pub fn arg(
    r: &mut juniper::Registry<DefaultScalarValue>,
    name: juniper::ArcStr,
    scalar: ScalarType,
    shape: Shape,
) -> juniper::meta::Argument<DefaultScalarValue> {
    with_scalar!(scalar, T => match shape {
        Shape::Required => r.arg::<T>(name, &()),
        Shape::Optional => r.arg::<Option<T>>(name, &()),
        Shape::List => r.arg::<Vec<Option<T>>>(name, &()),
        Shape::OptionalList => r.arg::<Option<Vec<Option<T>>>>(name, &()),
        Shape::OptionalListOfRequired => r.arg::<Option<Vec<T>>>(name, &()),
    })
}
