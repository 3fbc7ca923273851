import GatewayConfig
import Testing

/// The JSON Schema subset of `request_validation`: decoded strictly from gateway.json, checked against documents.
@Suite struct JSONSchemaTests {
    /// The schema of a route's `request_validation`, with the diagnostics its decoding produced.
    func load(_ schema: String) -> (schema: JSONSchema?, errors: [String], warnings: [String]) {
        let json = """
            { "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
              "routes": [{ "name": "r", "upstream": "u", "request_validation": { "body_schema": \(schema) } }] }
            """
        let result = ConfigLoader.load(text: json, environment: [:])
        return (
            result.config?.routes[0].requestValidation?.bodySchema, result.errors.map(\.description),
            result.warnings.map(\.description)
        )
    }

    func violation(_ schema: String, _ document: String) throws -> String? {
        let loaded = load(schema)
        let decoded = try #require(loaded.schema, "\(loaded.errors)")
        return decoded.violation(of: try JSONParser.parse(document))?.description
    }

    static let order = #"""
        { "type": "object", "required": ["sku", "qty"], "additionalProperties": false,
          "properties": {
            "sku": { "type": "string", "minLength": 3, "maxLength": 12 },
            "qty": { "type": "integer", "minimum": 1, "maximum": 100 },
            "price": { "type": "number", "exclusiveMinimum": 0, "multipleOf": 0.01 },
            "express": { "type": "boolean" },
            "note": { "type": ["string", "null"] },
            "tags": { "type": "array", "items": { "enum": ["gift", "fragile"] }, "maxItems": 2 },
            "ship": { "type": "object", "required": ["date"], "properties": { "date": { "type": "string", "format": "date" } } }
          } }
        """#

    // Each rule, with the JSON Pointer of the value that breaks it.
    @Test func rulesAndPointers() throws {
        #expect(try violation(Self.order, #"{"sku": "ab-12", "qty": 3, "price": 9.99, "tags": ["gift"], "note": null, "ship": {"date": "2024-02-29"}}"#) == nil)
        #expect(try violation(Self.order, #"{"sku": "ab-12", "qty": 3.0}"#) == nil, "3.0 is an integer")
        let cases: [(String, String)] = [
            (#"[]"#, "the body: expected an object, found an array"),
            (#"{"qty": 1}"#, #"the body: lacks the required property "sku""#),
            (#"{"sku": "ab", "qty": 1}"#, "/sku: must be at least 3 characters long"),
            (#"{"sku": "abcdefghijklm", "qty": 1}"#, "/sku: must be at most 12 characters long"),
            (#"{"sku": "abc", "qty": "2"}"#, "/qty: expected an integer, found a string"),
            (#"{"sku": "abc", "qty": 2.5}"#, "/qty: expected an integer, found a number with a fraction"),
            (#"{"sku": "abc", "qty": 0}"#, "/qty: must be at least 1"),
            (#"{"sku": "abc", "qty": 101}"#, "/qty: must be at most 100"),
            (#"{"sku": "abc", "qty": 1, "price": 0}"#, "/price: must be greater than 0"),
            (#"{"sku": "abc", "qty": 1, "price": 1.005}"#, "/price: must be a multiple of 0.01"),
            (#"{"sku": "abc", "qty": 1, "note": 5}"#, "/note: expected a string or null, found a number"),
            (#"{"sku": "abc", "qty": 1, "tags": ["gift", "cake"]}"#, "/tags/1: is not one of the allowed values"),
            (#"{"sku": "abc", "qty": 1, "tags": ["gift", "gift", "gift"]}"#, "/tags: has 3 items, more than 2"),
            (#"{"sku": "abc", "qty": 1, "ship": {"date": "2023-02-29"}}"#, "/ship/date: is not a valid date"),
            (#"{"sku": "abc", "qty": 1, "ship": {}}"#, #"/ship: lacks the required property "date""#),
            (#"{"sku": "abc", "qty": 1, "admin": true}"#, "/admin: is not an allowed property"),
            (#"{"sku": "abc", "qty": 1, "a/b~c": true}"#, "/a~1b~0c: is not an allowed property"),
        ]
        for (document, expected) in cases {
            #expect(try violation(Self.order, document) == expected, "\(document)")
        }
    }

    // Combinators, const (null included), enum equality by value, boolean schemas, additionalProperties as a schema.
    @Test func combinatorsAndConstants() throws {
        let payment = #"""
            { "oneOf": [
                { "type": "object", "required": ["card"], "properties": { "card": { "type": "string" } } },
                { "type": "object", "required": ["iban"], "properties": { "iban": { "type": "string" } } } ] }
            """#
        #expect(try violation(payment, #"{"card": "4111"}"#) == nil)
        #expect(try violation(payment, #"{"card": "4111", "iban": "DE00"}"#) == "the body: matches more than one of the shapes where exactly one must match (oneOf)")
        #expect(try violation(payment, #"{}"#) == "the body: matches none of the allowed shapes (oneOf)")
        #expect(try violation(#"{ "anyOf": [{ "type": "string" }, { "type": "integer" }] }"#, "true") == "the body: matches none of the allowed shapes (anyOf)")
        #expect(try violation(#"{ "allOf": [{ "minimum": 1 }, { "maximum": 3 }] }"#, "4") == "the body: must be at most 3")
        #expect(try violation(#"{ "not": { "type": "null" } }"#, "null") == "the body: matches a shape that is not allowed (not)")
        #expect(try violation(#"{ "const": null }"#, "null") == nil)
        #expect(try violation(#"{ "const": null }"#, "0") == "the body: is not the required value")
        #expect(try violation(#"{ "enum": [1, {"a": [1, 2], "b": null}] }"#, #"{"b": null, "a": [1.0, 2]}"#) == nil)
        #expect(try violation("false", "{}") == "the body: is not allowed here")
        #expect(try violation("true", #"{"anything": [1]}"#) == nil)
        #expect(try violation(#"{ "additionalProperties": { "type": "integer" } }"#, #"{"a": 1, "b": "x"}"#) == "/b: expected an integer, found a string")
        #expect(try violation(#"{ "minProperties": 1 }"#, "{}") == "the body: has 0 properties, fewer than 1")
        #expect(try violation(#"{ "multipleOf": 3 }"#, "9") == nil)
        #expect(try violation(#"{ "multipleOf": 3 }"#, "10") == "the body: must be a multiple of 3")
    }

    // Query parameters become an object: typed where the property's schema wants a number, an integer or a boolean
    // and the text is one; repeated ones, or those the schema makes arrays, become arrays.
    @Test func queryParameters() throws {
        let loaded = ConfigLoader.load(
            text: #"""
                { "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } },
                  "routes": [{ "name": "r", "upstream": "u", "request_validation": { "query_schema": {
                    "required": ["q"], "additionalProperties": { "type": "string", "maxLength": 3 },
                    "properties": { "q": { "type": "string" }, "page": { "type": "integer", "minimum": 1 }, "ratio": { "type": "number" },
                                    "exact": { "type": "boolean" }, "tags": { "type": "array", "items": { "type": "integer" } } } } } }] }
                """#, environment: [:])
        let schema = try #require(loaded.config?.routes[0].requestValidation?.querySchema, "\(loaded.errors)")
        #expect(loaded.config?.routes[0].requestValidation?.bodySchema == nil)
        let document = schema.queryDocument([("q", "shoes"), ("page", "2"), ("ratio", "0.5"), ("exact", "true"), ("tags", "7"), ("x", "ab")])
        #expect(document == (try JSONParser.parse(#"{"q": "shoes", "page": 2, "ratio": 0.5, "exact": true, "tags": [7], "x": "ab"}"#)))
        #expect(schema.violation(of: document) == nil)
        let cases: [([(name: String, value: String)], String)] = [
            ([("page", "1")], #"the body: lacks the required property "q""#),
            ([("q", "a"), ("page", "0")], "/page: must be at least 1"),
            ([("q", "a"), ("page", "two")], "/page: expected an integer, found a string"),
            ([("q", "a"), ("page", "1"), ("page", "2")], "/page: expected an integer, found an array"),
            ([("q", "a"), ("tags", "1"), ("tags", "x")], "/tags/1: expected an integer, found a string"),
            ([("q", "a"), ("exact", "yes")], "/exact: expected a boolean, found a string"),
            ([("q", "a"), ("ratio", "nan")], "/ratio: expected a number, found a string"),
            ([("q", "a"), ("other", "long")], "/other: must be at most 3 characters long"),
        ]
        for (parameters, expected) in cases {
            #expect(schema.violation(of: schema.queryDocument(parameters))?.description == expected, "\(parameters)")
        }
    }

    /// A route's `request_validation` decoded from `validation` (JSON), with `match` for the route.
    func validation(_ validation: String, match: String = "{}") -> (config: RequestValidationConfig?, errors: [String]) {
        let loaded = ConfigLoader.load(
            text: #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u", "match": \#(match), "request_validation": \#(validation) }] }"#,
            environment: [:])
        return (loaded.config?.routes[0].requestValidation, loaded.errors.map(\.description))
    }

    // A path template's variables make an object, typed as query parameters are; every name the schema gives must be
    // one of the template's variables.
    @Test func pathVariables() throws {
        let loaded = validation(
            #"{ "path_schema": { "properties": { "id": { "type": "integer", "minimum": 1 }, "rest": { "type": "string", "maxLength": 8 } } } }"#,
            match: #"{ "path_template": "/orders/{id}/{rest=**}" }"#)
        let schema = try #require(loaded.config?.pathSchema, "\(loaded.errors)")
        let document = schema.pathDocument([("id", "7"), ("rest", "a/b")])
        #expect(document == (try JSONParser.parse(#"{"id": 7, "rest": "a/b"}"#)))
        #expect(schema.violation(of: document) == nil)
        #expect(schema.violation(of: schema.pathDocument([("id", "x"), ("rest", "a")]))?.description == "/id: expected an integer, found a string")
        #expect(schema.violation(of: schema.pathDocument([("id", "0"), ("rest", "a")]))?.description == "/id: must be at least 1")
        #expect(schema.violation(of: schema.pathDocument([("id", "1"), ("rest", "abcdefghi")]))?.description == "/rest: must be at most 8 characters long")

        let list = try #require(validation(#"{ "path_schema": { "properties": { "ids": { "type": "array", "items": { "type": "integer" }, "maxItems": 3 } } } }"#,
            match: #"{ "path_template": "/orders/{ids}" }"#).config?.pathSchema)
        #expect(list.pathDocument([("ids", "1, 2,3")]) == .object([("ids", .array([.integer(1), .integer(2), .integer(3)]))]))
        #expect(list.violation(of: list.pathDocument([("ids", "1,2,3,4")]))?.description == "/ids: has 4 items, more than 3")

        let unknown = validation(#"{ "path_schema": { "required": ["order"], "properties": { "ident": {} } } }"#, match: #"{ "path_template": "/orders/{id}" }"#)
        #expect(unknown.errors == [
            "routes[0].request_validation.path_schema.properties.ident: match.path_template has no variable {ident} (it has {id})",
            "routes[0].request_validation.path_schema.required: match.path_template has no variable {order} (it has {id})",
        ])
        #expect(validation(#"{ "path_schema": {} }"#, match: #"{ "path": "/orders" }"#).errors == [
            "routes[0].request_validation.path_schema: checks the variables of match.path_template, which this route does not have"
        ])
    }

    // Only the header fields a schema names make its document (clients send many others), looked up in any case;
    // array fields are split at commas, other fields' lines joined.
    @Test func headerFields() throws {
        let loaded = validation(#"""
            { "header_schema": { "required": ["X-Tenant"], "properties": {
                "X-Tenant": { "type": "string", "format": "uuid" }, "x-page-size": { "type": "integer", "maximum": 100 },
                "x-flags": { "type": "array", "items": { "enum": ["a", "b"] } }, "x-note": { "type": "string" } } } }
            """#)
        let schema = try #require(loaded.config?.headerSchema, "\(loaded.errors)")
        #expect(schema.headerNames == ["X-Tenant", "x-flags", "x-note", "x-page-size"])
        let fields: [String: [String]] = [
            "x-tenant": ["123e4567-e89b-12d3-a456-426614174000"], "x-page-size": ["50"], "x-flags": ["a, b", "a"], "x-note": ["one", " two"],
        ]
        let document = schema.headerDocument(names: schema.headerNames) { fields[$0.lowercased()] ?? [] }
        #expect(document == (try JSONParser.parse(#"{"X-Tenant": "123e4567-e89b-12d3-a456-426614174000", "x-flags": ["a", "b", "a"], "x-note": "one, two", "x-page-size": 50}"#)))
        #expect(schema.violation(of: document) == nil)
        let cases: [([String: [String]], String)] = [
            (["x-page-size": ["5"]], #"the body: lacks the required property "X-Tenant""#),
            (["x-tenant": ["nope"]], "/X-Tenant: is not a valid uuid"),
            (["x-tenant": ["123e4567-e89b-12d3-a456-426614174000"], "x-page-size": ["500"]], "/x-page-size: must be at most 100"),
            (["x-tenant": ["123e4567-e89b-12d3-a456-426614174000"], "x-flags": ["a,c"]], "/x-flags/1: is not one of the allowed values"),
        ]
        for (given, expected) in cases {
            let headers = schema.headerDocument(names: schema.headerNames) { given[$0.lowercased()] ?? [] }
            #expect(schema.violation(of: headers)?.description == expected, "\(given)")
        }

        let refused = validation(#"{ "header_schema": { "additionalProperties": false, "maxProperties": 3, "required": ["x-a", "bad name"], "properties": { "X-A": {} } } }"#)
        #expect(refused.errors == [
            "routes[0].request_validation.header_schema.required: x-a is named twice (field names ignore case: write it one way)",
            #"routes[0].request_validation.header_schema.required: "bad name" is not a header field name"#,
            "routes[0].request_validation.header_schema.additionalProperties: only the fields named in properties and required are checked (clients send others)",
            "routes[0].request_validation.header_schema.maxProperties: only the fields named in properties and required are checked (clients send others)",
        ])
        #expect(validation(#"{ "header_schema": { "type": "string" } }"#).errors == [
            #"routes[0].request_validation.header_schema.type: the parameters make an object: leave type out or make it "object""#
        ])
    }

    // Formats, checked by hand.
    @Test func formats() throws {
        let good: [(String, String)] = [
            ("date", "2024-02-29"), ("time", "23:59:60Z"), ("time", "08:30:00.125+05:30"), ("date-time", "2026-12-07T10:00:00Z"),
            ("date-time", "2026-12-07t10:00:00.5-01:00"), ("email", "ops@example.com"), ("uuid", "123e4567-e89b-12d3-a456-426614174000"),
            ("ipv4", "192.168.0.1"), ("ipv6", "::1"), ("ipv6", "fe80::1:2"), ("ipv6", "::ffff:192.0.2.1"), ("ipv6", "1:2:3:4:5:6:7:8"),
            ("hostname", "api.example.com"),
        ]
        let bad: [(String, String)] = [
            ("date", "2023-02-29"), ("date", "2026-13-01"), ("date", "2026-1-01"), ("time", "24:00:00Z"), ("time", "10:00:00"),
            ("date-time", "2026-12-07 10:00:00Z"), ("email", "no-at.example.com"), ("email", "a@b"), ("email", "a b@example.com"),
            ("uuid", "123e4567e89b12d3a456426614174000"), ("ipv4", "256.1.1.1"), ("ipv4", "01.2.3.4"), ("ipv4", "1.2.3"),
            ("ipv6", "1:2:3:4:5:6:7:8:9"), ("ipv6", "1::2::3"), ("ipv6", "12345::"), ("ipv6", "1:2:3:4:5:6:7"), ("hostname", "-bad.example"),
        ]
        for (format, text) in good {
            #expect(try violation(#"{ "format": "\#(format)" }"#, "\"\(text)\"") == nil, "\(format) \(text)")
        }
        for (format, text) in bad {
            #expect(try violation(#"{ "format": "\#(format)" }"#, "\"\(text)\"") == "the body: is not a valid \(format)", "\(format) \(text)")
        }
        #expect(try violation(#"{ "format": "email" }"#, "5") == nil, "formats apply to strings only")
    }

    // Strict decoding: a misspelt keyword, a refused one, a bad value each reported at its path; annotations pass.
    @Test func strictDecoding() {
        let base = "routes[0].request_validation.body_schema"
        let loaded = load(#"""
            { "title": "Order", "description": "x", "$schema": "https://json-schema.org/draft/2020-12/schema", "examples": [{}],
              "type": "objekt", "requird": ["a"], "minLength": 5, "maxLength": 2,
              "properties": { "code": { "type": "string", "pattern": "^[A-Z]+$" }, "n": { "multipleOf": 0 } },
              "items": { "$ref": "#/$defs/x" }, "format": "colour", "enum": [] }
            """#)
        #expect(loaded.errors.sorted() == [
            "\(base).enum: expected a non-empty array of the allowed values",
            #"\#(base).format: unknown value "colour"; expected one of "date", "time", "date-time", "email", "uuid", "ipv4", "ipv6", "hostname""#,
            #"\#(base).items["$ref"]: references are not supported; write the schema inline (repeat it, or split routes into files with include)"#,
            "\(base).minLength: is above maxLength: nothing could match",
            "\(base).properties.code.pattern: regular expressions are not supported (the gateway runs none on client input); use enum, format, minLength or maxLength",
            "\(base).properties.n.multipleOf: must be greater than 0",
            #"\#(base).requird: unknown key (did you mean "required"?)"#,
            #"\#(base).type: unknown value "objekt" (did you mean "object"?); expected one of "null", "boolean", "object", "array", "number", "integer", "string""#,
        ], "\(loaded.errors)")
        #expect(load(#"{ "type": "string", "required": ["a"] }"#).warnings == ["warning: \(base).required: applies to objects only, and type does not allow one"])
        #expect(load(#"{}"#).errors.isEmpty)
        let missing = ConfigLoader.load(
            text: #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u", "request_validation": {} }] }"#,
            environment: [:])
        #expect(missing.errors.map(\.description) == ["routes[0].request_validation: give at least one of body_schema, query_schema, path_schema, header_schema"])
        let wrongQuery = ConfigLoader.load(
            text: #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u", "request_validation": { "query_schema": { "type": "array" }, "max_body_bytes": 10 } }] }"#,
            environment: [:])
        #expect(wrongQuery.errors.map(\.description) == [#"routes[0].request_validation.query_schema.type: the parameters make an object: leave type out or make it "object""#])
        #expect(wrongQuery.warnings.map(\.description).contains("warning: routes[0].request_validation.max_body_bytes: applies to body_schema, which is not given"))
        let bodiless = ConfigLoader.load(
            text: #"{ "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u", "match": { "methods": ["GET", "DELETE"] }, "request_validation": { "body_schema": {} } }] }"#,
            environment: [:])
        #expect(bodiless.warnings.map(\.description) == ["warning: routes[0].request_validation.body_schema: the route takes only GET, DELETE: no body to check"])
    }
}
