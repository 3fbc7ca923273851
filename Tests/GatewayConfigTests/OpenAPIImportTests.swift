import Foundation
import GatewayConfig
import Testing

/// `gateway openapi`: routes from an OpenAPI 3 description, loaded back by the gateway's own config reader.
@Suite struct OpenAPIImportTests {
    static let spec = #"""
        { "openapi": "3.0.3", "info": { "title": "t", "version": "1" },
          "paths": {
            "/users/{user-id}": {
              "parameters": [{ "$ref": "#/components/parameters/Fields" }, { "name": "user-id", "in": "path", "required": true, "schema": { "type": "string" } },
                             { "name": "page", "in": "query", "schema": { "type": "integer", "minimum": 0 } }],
              "get": { "operationId": "getUser", "security": [{ "keys": [] }],
                       "parameters": [{ "name": "page", "in": "query", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                                      { "name": "ids", "in": "query", "style": "spaceDelimited", "schema": { "type": "array" } }] },
              "put": { "operationId": "getUser",
                       "requestBody": { "$ref": "#/components/requestBodies/User" } } },
            "/files/{name}.json": { "post": { "requestBody": { "content": { "application/x-www-form-urlencoded": { "schema": {} } } } } },
            "/tree": { "post": { "requestBody": { "required": true, "content": { "application/json; charset=utf-8": { "schema": { "$ref": "#/components/schemas/Node" } } } } } },
            "/missing": { "post": { "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Nope" } } } } } }
          },
          "components": {
            "securitySchemes": { "keys": { "type": "apiKey", "in": "header", "name": "X-API-Key" } },
            "parameters": { "Fields": { "name": "fields", "in": "query", "schema": { "type": "array", "items": { "enum": ["name", "age"] } } } },
            "requestBodies": { "User": { "required": true, "content": { "application/json": { "schema": {
              "type": "object", "required": ["name"],
              "properties": {
                "name": { "type": "string", "pattern": "^[a-z]+$", "x-internal": true, "example": "ann" },
                "age": { "type": "integer", "format": "int32", "minimum": 0, "exclusiveMinimum": true, "maximum": 150, "exclusiveMaximum": false },
                "role": { "type": "string", "enum": ["admin", "user"], "nullable": true },
                "tags": { "type": "array", "items": { "type": "string" }, "uniqueItems": true },
                "score": { "type": "number", "exclusiveMinimum": 0.5 } } } } } } },
            "schemas": { "Node": { "type": "object", "properties": { "children": { "type": "array", "items": { "$ref": "#/components/schemas/Node" } } } } }
          } }
        """#

    func imported(_ text: String = Self.spec, prefix: String? = nil) throws -> OpenAPIImport.Output {
        var options = OpenAPIImport.Options(upstream: "svc")
        options.prefix = prefix
        return try OpenAPIImport.routes(from: text, options: options)
    }

    /// The generated routes inside a gateway.json, as `include` would merge them.
    func load(_ output: OpenAPIImport.Output) -> ConfigLoadResult {
        guard case .object(let members) = output.document, case .array(let routes)? = members.first?.value else { return ConfigLoader.load(text: "", environment: [:]) }
        let json = """
            { "listeners": [{ "name": "l", "port": 1 }], "auth": { "api_keys": [] },
              "upstreams": { "svc": { "targets": ["http://127.0.0.1:9"] } }, "routes": \(JSONValue.array(routes).rendered) }
            """
        return ConfigLoader.load(text: json, environment: [:])
    }

    // One route per operation, paths as templates where they have variables, names unique, and the file loads.
    @Test func routesPerOperation() throws {
        let output = try imported(prefix: "/api/")
        let result = load(output)
        let config = try #require(result.config, "\(result.errors)")
        #expect(config.routes.map(\.name) == ["getUser", "getUser-2", "post-files-name-.json", "post-tree", "post-missing"])
        #expect(config.routes[0].match.pathTemplate?.description == "/api/users/{user_id}")
        #expect(config.routes[0].match.methods == ["GET"] && config.routes[1].match.methods == ["PUT"])
        #expect(config.routes[2].match.pathTemplate?.description == "/api/files/*")
        #expect(config.routes[3].match.path == "/api/tree")
        let forwarding = config.routes.map { "\($0.stripPrefix ?? "-") \($0.upstream)" }
        #expect(Set(forwarding) == ["/api svc"])
        #expect(config.routes[2].requestValidation == nil, "a form body is not JSON")
        #expect(output.notes.contains(#"POST /files/{name}.json: segment "{name}.json" mixes text and a variable; the route matches any segment there"#))
        #expect(output.notes.contains("getUser: the description requires keys (auth.require api_key (the gateway reads X-API-Key or Authorization: Bearer)); give these routes that auth"), "\(output.notes)")
    }

    // Schemas: $refs inlined (request bodies too), nullable and OpenAPI 3.0's boolean exclusive bounds rewritten,
    // what cannot be checked noted; a recursive schema stops being checked where it recurs.
    @Test func schemasTranslate() throws {
        let output = try imported()
        let config = try #require(load(output).config)
        let user = try #require(config.routes[1].requestValidation)
        #expect(user.bodyRequired)
        let userSchema = try #require(user.bodySchema)
        let check = { (body: String) throws -> String? in userSchema.violation(of: try JSONParser.parse(body))?.description }
        #expect(try check(#"{"name": "ann", "age": 30, "role": null, "tags": ["a", "a"], "score": 1}"#) == nil)
        #expect(try check(#"{"age": 3}"#) == #"the body: lacks the required property "name""#)
        #expect(try check(#"{"name": "ann", "age": 0}"#) == "/age: must be greater than 0")
        #expect(try check(#"{"name": "ann", "age": 150}"#) == nil, "exclusiveMaximum: false keeps maximum inclusive")
        #expect(try check(#"{"name": "ann", "role": "owner"}"#) == "/role: is not one of the allowed values")
        #expect(try check(#"{"name": "ann", "score": 0.5}"#) == "/score: must be greater than 0.5")
        #expect(output.notes.contains("PUT /users/{user-id} body.name: pattern is not checked"), "\(output.notes)")
        #expect(output.notes.contains("PUT /users/{user-id} body.tags: uniqueItems is not checked"), "\(output.notes)")
        let storageNotes = output.notes.filter { $0.contains("int32") || $0.contains("x-internal") || $0.contains("example") }
        #expect(storageNotes.isEmpty, "storage formats, extensions and examples are not rules")

        let tree = try #require(config.routes[3].requestValidation?.bodySchema)
        #expect(tree.violation(of: try JSONParser.parse(#"{"children": [{"children": "x"}]}"#)) == nil)
        #expect(tree.violation(of: try JSONParser.parse(#"{"children": 5}"#))?.description == "/children: expected an array, found a number")
        #expect(output.notes.contains("POST /tree body.children[]: #/components/schemas/Node contains itself; below this point bodies are not checked"))
        #expect(output.notes.contains(##"POST /missing body: $ref "#/components/schemas/Nope" does not lead to anything in this document; not checked"##))
        #expect(config.routes[4].requestValidation?.bodyRequired == false)
    }

    // Query parameters (the path's and the operation's, the operation's own winning, $refs followed) become a
    // query_schema; those not written one value per parameter are noted and not checked.
    @Test func queryParametersTranslate() throws {
        let output = try imported()
        let config = try #require(load(output).config)
        let get = try #require(config.routes[0].requestValidation)
        #expect(get.bodySchema == nil)
        let query = try #require(get.querySchema)
        let check = { (parameters: [(name: String, value: String)]) in query.violation(of: query.queryDocument(parameters))?.description }
        #expect(check([("page", "1"), ("fields", "name"), ("fields", "age"), ("ids", "1 2")]) == nil)
        #expect(check([("page", "0")]) == "/page: must be at least 1", "the operation's page, not the path's")
        #expect(check([("fields", "name")]) == #"the body: lacks the required property "page""#)
        #expect(check([("page", "1"), ("fields", "email")]) == "/fields/0: is not one of the allowed values")
        #expect(output.notes.contains("GET /users/{user-id}: query parameter ids is not written the way the gateway reads it (style/explode); not checked"))
        // The PUT shares the path's parameters (page from 0, fields) besides its body.
        let put = try #require(config.routes[1].requestValidation)
        let putQuery = try #require(put.querySchema)
        #expect(putQuery.violation(of: putQuery.queryDocument([("page", "0")])) == nil)
        #expect(put.bodySchema != nil)
    }

    // Path parameters check the template's variables (renamed as the template renames them), header parameters the
    // fields they name (Accept, Content-Type and Authorization ignored, as OpenAPI says); cookie parameters are noted.
    @Test func pathAndHeaderParametersTranslate() throws {
        let output = try imported(#"""
            { "openapi": "3.1.0", "paths": {
              "/orders/{order-id}/items/{ids}": { "get": { "parameters": [
                { "name": "order-id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1 } },
                { "name": "ids", "in": "path", "required": true, "schema": { "type": "array", "items": { "type": "integer" } } },
                { "name": "X-Tenant", "in": "header", "required": true, "schema": { "type": "string", "format": "uuid" } },
                { "name": "x-tenant", "in": "header", "schema": { "type": "integer" } },
                { "name": "Accept", "in": "header", "required": true, "schema": { "enum": ["application/xml"] } },
                { "name": "X-Odd", "in": "header", "style": "form", "schema": { "type": "string" } },
                { "name": "session", "in": "cookie", "schema": { "type": "string" } } ] } },
              "/files/{name}.json": { "get": { "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "integer" } }] } } } }
            """#)
        let config = try #require(load(output).config)
        let validation = try #require(config.routes[0].requestValidation)
        let path = try #require(validation.pathSchema)
        #expect(config.routes[0].match.pathTemplate?.description == "/orders/{order_id}/items/{ids}")
        #expect(path.violation(of: path.pathDocument([("order_id", "7"), ("ids", "1,2")])) == nil)
        #expect(path.violation(of: path.pathDocument([("order_id", "0"), ("ids", "1")]))?.description == "/order_id: must be at least 1")
        #expect(path.violation(of: path.pathDocument([("order_id", "1"), ("ids", "1,x")]))?.description == "/ids/1: expected an integer, found a string")
        let headers = try #require(validation.headerSchema)
        #expect(headers.headerNames == ["X-Odd", "X-Tenant"], "the operation's first X-Tenant wins; Accept is left to the media types")
        let none = headers.headerDocument(names: headers.headerNames) { _ in [] }
        #expect(headers.violation(of: none)?.description == #"the body: lacks the required property "X-Tenant""#)
        #expect(output.notes.contains("GET /orders/{order-id}/items/{ids}: header parameter X-Odd is not written the way the gateway reads it (style/explode); not checked"))
        #expect(output.notes.contains("GET /orders/{order-id}/items/{ids}: cookie parameter session is not checked"))
        #expect(config.routes[1].requestValidation == nil, "a variable in a mixed segment is no template variable")
    }

    // --auth: routes whose operations need credentials get that auth.require, with the OAuth scopes every allowed
    // alternative requires; explicitly public operations get none.
    @Test func authFromSecurityRequirements() throws {
        var options = OpenAPIImport.Options(upstream: "svc")
        options.auth = ["jwt", "introspection"]
        let output = try OpenAPIImport.routes(
            from: #"""
                { "openapi": "3.1.0", "security": [{ "oauth": ["orders:read"] }],
                  "paths": { "/orders": {
                    "get": {},
                    "post": { "security": [{ "oauth": ["orders:write"] }, { "oidc": ["orders:write"] }] },
                    "delete": { "security": [{ "oauth": ["orders:admin"] }, { "key": [] }] } },
                    "/health": { "get": { "security": [] } } } }
                """#, options: options)
        #expect(output.problems.isEmpty, "\(output.problems)")
        guard case .object(let document) = output.document, let generated = document.first?.value else {
            Issue.record("no routes: \(output.document)")
            return
        }
        let json = """
            { "listeners": [{ "name": "l", "port": 1 }], "upstreams": { "svc": { "targets": ["http://127.0.0.1:9"] } },
              "auth": { "jwt": { "keys": [{ "alg": "HS256", "secret": "0123456789abcdef0123456789abcdef" }] },
                        "introspection": { "upstream": "svc", "path": "/introspect", "client_id": "gw", "client_secret": "s" } },
              "routes": \(generated.rendered) }
            """
        let result = ConfigLoader.load(text: json, environment: [:])
        let routes = try #require(result.config?.routes, "\(result.errors)")
        let auth = routes.map { route in route.auth.map { "\($0.require.map(\.rawValue)) \($0.scopes)" } ?? "public" }
        #expect(auth == [#"["jwt", "introspection"] ["orders:read"]"#, #"["jwt", "introspection"] ["orders:write"]"#, #"["jwt", "introspection"] []"#, "public"])
        #expect(output.notes == ["DELETE /orders: its security alternatives require different scopes; route delete-orders checks none"])
    }

    // What is not an OpenAPI 3 JSON document is refused with the reason.
    @Test func refusals() {
        let cases = [
            ("openapi: 3.0.0\npaths: {}", "not a JSON document"),
            (#"{"swagger": "2.0", "paths": {}}"#, "Swagger 2.0 is not read"),
            (#"{"openapi": "3.1.0"}"#, "the document has no \"paths\" object"),
            (#"[1]"#, "expected an OpenAPI document"),
        ]
        for (text, expected) in cases {
            do {
                _ = try imported(text)
                Issue.record("\(text) was imported")
            } catch {
                #expect(error is OpenAPIImport.ImportError)
                #expect(String(describing: error).contains(expected), "\(error)")
            }
        }
    }

    // Routes the config reader would refuse are problems, named by route: the command writes no file then.
    @Test func refusedRoutesAreProblems() throws {
        let output = try imported(#"""
            { "openapi": "3.0.0", "paths": {
              "/a b": { "get": { "operationId": "spaced" } },
              "/up": { "post": { "operationId": "upload", "requestBody": { "content": { "application/json": { "schema": { "type": "file" } } } } } },
              "/ok": { "get": {} } } }
            """#)
        #expect(output.problems == [
            #"route spaced: match.path: "/a b" must be a path starting with "/" (no query, fragment or spaces)"#,
            #"route upload: request_validation.body_schema.type: unknown value "file"; expected one of "null", "boolean", "object", "array", "number", "integer", "string""#,
        ], "\(output.problems)")
        #expect(try imported().problems.isEmpty)
    }

    // The example description imports into routes gateway.json can include.
    @Test func exampleImports() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/openapi/orders.openapi.json")
        let text = try String(contentsOf: url, encoding: .utf8)
        let output = try imported(text, prefix: "/api")
        let result = load(output)
        #expect(result.errors.isEmpty, "\(result.errors)")
        #expect(result.config?.routes.count == 7)
    }
}
