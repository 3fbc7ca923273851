import Foundation
import GatewayPolicy

/// The part of JSON Schema (draft 2020-12) a route's `request_validation` (`body_schema`, `query_schema`) can use,
/// decoded strictly (a misspelt keyword is a config error, not a rule silently skipped) and checked against request
/// bodies and query parameters.
///
/// Left out on purpose: `pattern` and `patternProperties` (no regular expressions run on client input: no
/// backtracking to exploit), `$ref` (schemas are written inline), `uniqueItems` (quadratic in the body's size).
/// Annotations (`title`, `description`, `examples`...) are accepted and ignored.
public struct JSONSchema: Sendable {
    public enum JSONType: String, CaseIterable, Sendable {
        case null, boolean, object, array, number, integer, string
    }

    public enum Format: String, CaseIterable, Sendable {
        case date, time, dateTime = "date-time", email, uuid, ipv4, ipv6, hostname
    }

    /// A boolean schema: true accepts every value, false none.
    var constant: Bool?
    var types: [JSONType]?
    /// `enum`.
    var allowedValues: [JSONValue]?
    /// `const`, as a one-element list (`const: null` is a value too).
    var constValue: [JSONValue] = []
    var minimum: Double?
    var maximum: Double?
    var exclusiveMinimum: Double?
    var exclusiveMaximum: Double?
    var multipleOf: Double?
    var minLength: Int?
    var maxLength: Int?
    var format: Format?
    /// `items`: the schema of every element (zero or one).
    var items: [JSONSchema] = []
    var minItems: Int?
    var maxItems: Int?
    var properties: [String: JSONSchema] = [:]
    var required: [String] = []
    /// `additionalProperties` (zero or one): properties not in `properties`.
    var additionalProperties: [JSONSchema] = []
    var minProperties: Int?
    var maxProperties: Int?
    var allOf: [JSONSchema] = []
    var anyOf: [JSONSchema] = []
    var oneOf: [JSONSchema] = []
    var not: [JSONSchema] = []

    public init(accepting everything: Bool) { constant = everything }
    init() {}

    /// Where in the checked document a rule failed, and which.
    public struct Violation: Sendable, Equatable, CustomStringConvertible {
        /// A JSON Pointer (RFC 6901) into the document: `""` is the whole of it, `/items/0/qty` a member.
        public var pointer: String
        public var message: String
        public var description: String { (pointer.isEmpty ? "the body" : pointer) + ": " + message }
    }

    private enum Step {
        case key(String)
        case index(Int)
    }

    /// The first rule `value` breaks, or nil when it conforms.
    public func violation(of value: JSONValue) -> Violation? {
        var path: [Step] = []
        return check(value, at: &path)
    }

    private func check(_ value: JSONValue, at path: inout [Step]) -> Violation? {
        func fail(_ message: String) -> Violation { Violation(pointer: Self.pointer(path), message: message) }
        if let constant { return constant ? nil : fail("is not allowed here") }
        if let types, !types.contains(where: { Self.value(value, is: $0) }) {
            let names = types.map { Self.article($0) }.joined(separator: " or ")
            return fail("expected \(names), found \(Self.describe(value))")
        }
        if let allowedValues, !allowedValues.contains(where: { Self.equal($0, value) }) {
            return fail("is not one of the allowed values")
        }
        if let required = constValue.first, !Self.equal(required, value) { return fail("is not the required value") }
        switch value {
        case .integer, .double:
            if let problem = checkNumber(value) { return fail(problem) }
        case .string(let text):
            if let problem = checkString(text) { return fail(problem) }
        case .array(let elements):
            if let minItems, elements.count < minItems { return fail("has \(elements.count) items, fewer than \(minItems)") }
            if let maxItems, elements.count > maxItems { return fail("has \(elements.count) items, more than \(maxItems)") }
            if let schema = items.first {
                for (index, element) in elements.enumerated() {
                    path.append(.index(index))
                    if let violation = schema.check(element, at: &path) { return violation }
                    path.removeLast()
                }
            }
        case .object(let members):
            if let minProperties, members.count < minProperties { return fail("has \(members.count) properties, fewer than \(minProperties)") }
            if let maxProperties, members.count > maxProperties { return fail("has \(members.count) properties, more than \(maxProperties)") }
            for name in required where !members.contains(where: { $0.key == name }) {
                return fail("lacks the required property \"\(name)\"")
            }
            for (key, member) in members {
                let schema = properties[key] ?? additionalProperties.first
                guard let schema else { continue }
                path.append(.key(key))
                if var violation = schema.check(member, at: &path) {
                    // `additionalProperties: false` says the property has no place, not that its value is wrong.
                    if properties[key] == nil, schema.constant == false { violation.message = "is not an allowed property" }
                    return violation
                }
                path.removeLast()
            }
        case .null, .bool:
            break
        }
        for schema in allOf {
            if let violation = schema.check(value, at: &path) { return violation }
        }
        if !anyOf.isEmpty, !anyOf.contains(where: { $0.violation(of: value) == nil }) {
            return fail("matches none of the allowed shapes (anyOf)")
        }
        if !oneOf.isEmpty {
            let matching = oneOf.lazy.filter { $0.violation(of: value) == nil }.prefix(2).count
            if matching == 0 { return fail("matches none of the allowed shapes (oneOf)") }
            if matching > 1 { return fail("matches more than one of the shapes where exactly one must match (oneOf)") }
        }
        if let excluded = not.first, excluded.violation(of: value) == nil { return fail("matches a shape that is not allowed (not)") }
        return nil
    }

    private func checkNumber(_ value: JSONValue) -> String? {
        let number: Double
        switch value {
        case .integer(let whole): number = Double(whole)
        case .double(let fraction): number = fraction
        default: return nil
        }
        if let minimum, number < minimum { return "must be at least \(Self.format(minimum))" }
        if let maximum, number > maximum { return "must be at most \(Self.format(maximum))" }
        if let exclusiveMinimum, number <= exclusiveMinimum { return "must be greater than \(Self.format(exclusiveMinimum))" }
        if let exclusiveMaximum, number >= exclusiveMaximum { return "must be less than \(Self.format(exclusiveMaximum))" }
        if let multipleOf {
            let isMultiple: Bool
            if case .integer(let whole) = value, multipleOf.rounded() == multipleOf, abs(multipleOf) < 9.0e18 {
                isMultiple = whole % Int(multipleOf) == 0
            } else {
                let quotient = number / multipleOf
                isMultiple = quotient.isFinite && abs(quotient - quotient.rounded()) <= 1e-9 * max(1, abs(quotient))
            }
            if !isMultiple { return "must be a multiple of \(Self.format(multipleOf))" }
        }
        return nil
    }

    private func checkString(_ text: String) -> String? {
        if minLength != nil || maxLength != nil {
            // JSON Schema counts characters as code points.
            let length = text.unicodeScalars.count
            if let minLength, length < minLength { return "must be at least \(minLength) characters long" }
            if let maxLength, length > maxLength { return "must be at most \(maxLength) characters long" }
        }
        if let format, !StringFormats.matches(text, format) { return "is not a valid \(format.rawValue)" }
        return nil
    }

    // MARK: Parameters (query, path, headers)

    /// A query's parameters as the object this schema checks: each name once, its value a string, or typed where the
    /// property's schema asks for a number, an integer or a boolean and the text is one (`?page=2` is `{"page": 2}`);
    /// a repeated parameter, or one whose schema is an array, is an array of them.
    public func queryDocument(_ parameters: [(name: String, value: String)]) -> JSONValue {
        var order: [String] = []
        var values: [String: [String]] = [:]
        for (name, value) in parameters {
            if values[name] == nil { order.append(name) }
            values[name, default: []].append(value)
        }
        return .object(order.map { name in (name, member(name, values[name] ?? [])) })
    }

    /// A path template's variables (`{"id": "7"}`), typed as query parameters are; a variable whose schema is an array
    /// is the list of its comma-separated elements (OpenAPI's `simple` style: `/orders/1,2,3`).
    public func pathDocument(_ variables: [(name: String, value: String)]) -> JSONValue {
        .object(variables.map { name, value in (name, member(name, isList(name) ? Self.elements([value]) : [value])) })
    }

    /// The header fields this schema names (in `properties` or `required`), in a stable order: only these make the
    /// document `headerDocument` builds, since every client sends fields an API does not list. Worked out once per
    /// route, not per request.
    public var headerNames: [String] {
        var names = properties.keys.sorted()
        for name in required where !names.contains(name) { names.append(name) }
        return names
    }

    /// The request's fields `names` (this schema's `headerNames`; `values(name)` gives a field's lines, any case), typed
    /// as query parameters are. A field whose schema is an array is a list of its comma-separated elements (OpenAPI's
    /// `simple` style); several lines of any other field are one value, joined with ", " as RFC 9110 combines them.
    public func headerDocument(names: [String], _ values: (String) -> [String]) -> JSONValue {
        .object(names.compactMap { name -> (key: String, value: JSONValue)? in
            let lines = values(name)
            guard !lines.isEmpty else { return nil }
            if isList(name) { return (name, member(name, Self.elements(lines))) }
            return (name, member(name, [lines.map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")]))
        })
    }

    private func schema(of property: String) -> JSONSchema? { properties[property] ?? additionalProperties.first }
    private func isList(_ property: String) -> Bool { schema(of: property)?.types?.contains(.array) == true }

    /// The comma-separated elements of `lines`, without the spaces around them.
    private static func elements(_ lines: [String]) -> [String] {
        lines.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// One parameter's value: an array when repeated or when its schema asks for one, else its text, typed.
    private func member(_ name: String, _ texts: [String]) -> JSONValue {
        let schema = schema(of: name)
        if texts.count != 1 || isList(name) {
            let itemSchema = schema?.items.first
            return .array(texts.map { Self.typed($0, as: itemSchema) })
        }
        return Self.typed(texts[0], as: schema)
    }

    private static func typed(_ text: String, as schema: JSONSchema?) -> JSONValue {
        guard let types = schema?.types else { return .string(text) }
        if types.contains(.integer) || types.contains(.number), let whole = Int(text) { return .integer(whole) }
        if types.contains(.number), let number = Double(text), number.isFinite, text.allSatisfy({ !$0.isLetter || $0 == "e" || $0 == "E" }) {
            return .double(number)
        }
        if types.contains(.boolean), text == "true" || text == "false" { return .bool(text == "true") }
        return .string(text)
    }

    // MARK: Values

    static func value(_ value: JSONValue, is type: JSONType) -> Bool {
        switch (type, value) {
        case (.null, .null), (.boolean, .bool), (.object, .object), (.array, .array), (.string, .string): return true
        case (.number, .integer), (.number, .double), (.integer, .integer): return true
        case (.integer, .double(let number)): return number.rounded() == number  // 1.0 is an integer, as the spec says
        default: return false
        }
    }

    /// JSON Schema's equality: numbers by value (1 equals 1.0), objects whatever their key order.
    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.integer(let x), .double(let y)), (.double(let y), .integer(let x)): return Double(x) == y
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.object(let x), .object(let y)):
            return x.count == y.count && x.allSatisfy { member in y.contains { $0.key == member.key && equal($0.value, member.value) } }
        default: return a == b
        }
    }

    private static func article(_ type: JSONType) -> String {
        switch type {
        case .null: return "null"
        case .boolean: return "a boolean"
        case .object: return "an object"
        case .array: return "an array"
        case .number: return "a number"
        case .integer: return "an integer"
        case .string: return "a string"
        }
    }

    private static func describe(_ value: JSONValue) -> String {
        if case .double = value { return "a number with a fraction" }
        return value.typeDescription
    }

    private static func format(_ number: Double) -> String {
        number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(number)
    }

    /// RFC 6901: `~` is written `~0` and `/` is `~1`. Long keys (client input) are cut.
    private static func pointer(_ path: [Step]) -> String {
        var pointer = ""
        for step in path {
            switch step {
            case .index(let index): pointer += "/\(index)"
            case .key(let key):
                let escaped = key.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
                pointer += "/" + (escaped.count > 64 ? escaped.prefix(64) + "..." : escaped)
            }
        }
        return pointer
    }
}

/// The `format` values a schema can ask for, checked by hand (no regular expressions).
enum StringFormats {
    static func matches(_ text: String, _ format: JSONSchema.Format) -> Bool {
        let bytes = Array(text.utf8)
        switch format {
        // RFC 3339, as the config's own times are read.
        case .date: return bytes.count == 10 && RFC3339.seconds(text) != nil
        case .time: return RFC3339.seconds("1970-01-01T" + text) != nil
        case .dateTime: return bytes.count > 10 && RFC3339.seconds(text) != nil
        case .email:
            guard let at = bytes.lastIndex(of: UInt8(ascii: "@")), at > 0, at <= 64 else { return false }
            let local = bytes[..<at]
            guard local.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "@") && $0 != UInt8(ascii: "\"") }) else { return false }
            let domain = text.utf8.dropFirst(at + 1)
            return domain.contains(UInt8(ascii: ".")) && isHostName(String(decoding: domain, as: UTF8.self))
        case .uuid:
            guard bytes.count == 36 else { return false }
            return bytes.enumerated().allSatisfy { index, byte in
                [8, 13, 18, 23].contains(index) ? byte == UInt8(ascii: "-") : isHex(byte)
            }
        // The parser `trusted_proxies` use; a zone (`%eth0`) is not part of the format.
        case .ipv4: return !text.contains(":") && IPAddress(text) != nil
        case .ipv6: return text.contains(":") && !text.contains("%") && IPAddress(text) != nil
        case .hostname: return text.utf8.count <= 253 && isHostName(text)
        }
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }
}

// MARK: Decoding

extension JSONSchema {
    /// Keywords that only describe (documentation, editors); accepted and ignored.
    private static let annotations = [
        "$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
        "contentMediaType", "contentEncoding",
    ]
    private static let refused: KeyValuePairs<String, String> = [
        "pattern": "regular expressions are not supported (the gateway runs none on client input); use enum, format, minLength or maxLength",
        "patternProperties": "regular expressions are not supported (the gateway runs none on client input); list the properties",
        "$ref": "references are not supported; write the schema inline (repeat it, or split routes into files with include)",
        "$defs": "references are not supported; write the schema inline",
        "definitions": "references are not supported; write the schema inline",
        "uniqueItems": "not supported (its cost grows with the square of the array's length)",
        "if": "not supported; anyOf or oneOf express most conditions",
        "dependentRequired": "not supported; anyOf with required lists expresses it",
        "dependentSchemas": "not supported", "prefixItems": "not supported; items applies to every element",
        "contains": "not supported", "propertyNames": "not supported", "unevaluatedProperties": "not supported; use additionalProperties",
        "unevaluatedItems": "not supported",
    ]

    /// A schema object or a boolean schema, every keyword checked (unknown ones are errors with a suggestion).
    static func decode(_ node: ConfigNode) -> JSONSchema? {
        if case .bool(let everything) = node.value { return JSONSchema(accepting: everything) }
        return node.object { o in
            var schema = JSONSchema()
            for key in annotations { o.accept(key) }
            for (key, reason) in refused where o.has(key) {
                o.accept(key)
                o.node.context.error(o.path / key, reason)
            }
            schema.types = o.optional("type") { node -> [JSONType]? in
                let names = JSONType.allCases.map(\.rawValue)
                if case .array = node.value { return node.array { $0.oneOf(names).flatMap(JSONType.init(rawValue:)) } }
                return node.oneOf(names).flatMap(JSONType.init(rawValue:)).map { [$0] }
            }
            schema.allowedValues = o.optional("enum") { node -> [JSONValue]? in
                guard case .array(let values) = node.value, !values.isEmpty else {
                    node.error("expected a non-empty array of the allowed values")
                    return nil
                }
                return values
            }
            if case .object(let members) = o.node.value, let value = members.first(where: { $0.key == "const" })?.value {
                o.accept("const")
                schema.constValue = [value]
            }
            let bound = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude
            schema.minimum = o.optional("minimum") { $0.number(bound) }
            schema.maximum = o.optional("maximum") { $0.number(bound) }
            schema.exclusiveMinimum = o.optional("exclusiveMinimum") { $0.number(bound) }
            schema.exclusiveMaximum = o.optional("exclusiveMaximum") { $0.number(bound) }
            schema.multipleOf = o.optional("multipleOf") { node -> Double? in
                guard let number = node.number(bound) else { return nil }
                guard number > 0 else {
                    node.error("must be greater than 0")
                    return nil
                }
                return number
            }
            schema.minLength = o.optional("minLength") { $0.int(0...Int.max) }
            schema.maxLength = o.optional("maxLength") { $0.int(0...Int.max) }
            schema.format = o.optional("format") { $0.oneOf(Format.allCases.map(\.rawValue)).flatMap(Format.init(rawValue:)) }
            schema.items = o.optional("items", decode).map { [$0] } ?? []
            schema.minItems = o.optional("minItems") { $0.int(0...Int.max) }
            schema.maxItems = o.optional("maxItems") { $0.int(0...Int.max) }
            schema.properties = Dictionary(
                (o.optional("properties") { $0.map { _, value in decode(value) } } ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            schema.required = o.optional("required") { node in
                node.array { item -> String? in
                    guard case .string(let name) = item.value else {
                        item.error("expected a property name")
                        return nil
                    }
                    return name
                }
            } ?? []
            schema.additionalProperties = o.optional("additionalProperties", decode).map { [$0] } ?? []
            schema.minProperties = o.optional("minProperties") { $0.int(0...Int.max) }
            schema.maxProperties = o.optional("maxProperties") { $0.int(0...Int.max) }
            let list = { (key: String) in
                o.optional(key) { node -> [JSONSchema]? in
                    if case .array(let items) = node.value, items.isEmpty { node.error("list at least one schema") }
                    return node.array(decode)
                } ?? []
            }
            (schema.allOf, schema.anyOf, schema.oneOf) = (list("allOf"), list("anyOf"), list("oneOf"))
            schema.not = o.optional("not", decode).map { [$0] } ?? []
            if let min = schema.minLength, let max = schema.maxLength, min > max { o.node.context.error(o.path / "minLength", "is above maxLength: nothing could match") }
            if let min = schema.minItems, let max = schema.maxItems, min > max { o.node.context.error(o.path / "minItems", "is above maxItems: nothing could match") }
            if let min = schema.minimum, let max = schema.maximum, min > max { o.node.context.error(o.path / "minimum", "is above maximum: nothing could match") }
            if let types = schema.types, !types.contains(.object) && !types.isEmpty {
                for key in ["properties", "required", "additionalProperties"] where o.has(key) {
                    o.node.context.warning(o.path / key, "applies to objects only, and type does not allow one")
                }
            }
            return schema
        }
    }
}
