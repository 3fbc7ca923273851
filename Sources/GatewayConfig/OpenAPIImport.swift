import Foundation
import GatewayPolicy

/// `gateway openapi`: the routes of one upstream, written from its OpenAPI 3 description (JSON), for a file that
/// gateway.json `include`s: one route per operation (its path as `match.path` or `match.path_template`, its
/// method) and, where the operation takes a JSON body, `request_validation` with the body's schema translated to
/// the JSON Schema the gateway checks (`$ref`s inlined, OpenAPI 3.0's `nullable` and boolean `exclusiveMinimum`
/// rewritten). What cannot be carried over (a `pattern`, a recursive schema, a security scheme) is kept as a note
/// for the operator, never silently dropped. Kong's deck has `openapi2kong`; the others have nothing like it.
public enum OpenAPIImport {
    public struct Options: Sendable {
        public var upstream: String
        /// Put before every path (`/api`), and stripped again before forwarding.
        public var prefix: String?
        /// Put before every route name (`orders-`), so several services' routes stay apart.
        public var namePrefix = ""
        /// false: no `request_validation` (bodies and queries unchecked).
        public var validate = true
        /// `--auth`: the `auth.require` of routes whose operations need credentials (empty: none set; a note says
        /// which routes need them).
        public var auth: [String] = []
        public init(upstream: String) { self.upstream = upstream }
    }

    public struct Output: Sendable {
        /// `{"routes": [...]}`.
        public var document: JSONValue
        /// What the operator should know: what was left out and why.
        public var notes: [String]
        /// What gateway.json would refuse in these routes (a path it cannot match, a schema keyword it refuses), by
        /// route name: the file is not usable until they are mended in the description.
        public var problems: [String] = []
    }

    public struct ImportError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    private static let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    public static func routes(from text: String, options: Options) throws(ImportError) -> Output {
        let document: JSONValue
        do {
            document = try JSONParser.parse(text)
        } catch {
            throw ImportError(description: "not a JSON document: \(error.description) (convert a YAML description to JSON first)")
        }
        guard case .object(let root) = document else { throw ImportError(description: "expected an OpenAPI document (a JSON object)") }
        guard case .string(let version)? = root.value("openapi"), version.hasPrefix("3.") else {
            if root.value("swagger") != nil { throw ImportError(description: "Swagger 2.0 is not read; convert it to OpenAPI 3 first (swagger2openapi)") }
            throw ImportError(description: "expected an OpenAPI 3 document (an \"openapi\": \"3.x\" key)")
        }
        guard case .object(let paths)? = root.value("paths") else { throw ImportError(description: "the document has no \"paths\" object") }
        var importer = Importer(document: document, options: options)
        for (path, item) in paths {
            guard case .object(let operations) = item else { continue }
            if operations.value("$ref") != nil {
                importer.notes.append("\(path): a path item given by $ref is not read; write it out")
                continue
            }
            for method in methods {
                guard case .object(let operation)? = operations.value(method) else { continue }
                var parameters: [JSONValue] = []
                for list in [operation.value("parameters"), operations.value("parameters")] {  // the operation's win
                    if case .array(let items)? = list { parameters += items }
                }
                importer.addRoute(path: path, method: method, operation: operation, parameters: parameters)
            }
        }
        importer.noteSecurity()
        if importer.routes.isEmpty { importer.notes.append("no operations found under \"paths\"") }
        var output = Output(document: .object([("routes", .array(importer.routes))]), notes: importer.notes)
        output.problems = problems(in: importer.routes, upstream: options.upstream)
        return output
    }

    /// The routes as the config reader sees them, with a stand-in listener and upstream: its errors, by route name.
    private static func problems(in routes: [JSONValue], upstream: String) -> [String] {
        let config = JSONValue.object([
            ("listeners", .array([.object([("name", .string("l")), ("port", .integer(1))])])),
            ("upstreams", .object([(upstream, .object([("targets", .array([.string("http://127.0.0.1:1")]))]))])),
            ("routes", .array(routes)),
        ])
        // The credentials themselves are gateway.json's (auth.jwt, auth.api_keys...), not the routes file's.
        let errors = ConfigLoader.load(text: config.rendered, environment: [:]).errors.filter {
            !($0.path.hasSuffix("auth.require") && $0.message.contains(" to be configured"))
        }
        return errors.map { diagnostic in
            let text = diagnostic.description
            // "routes[3].match.path: ..." -> "route getUser: match.path: ..."
            guard text.hasPrefix("routes["), let close = text.firstIndex(of: "]"), let index = Int(text[text.index(text.startIndex, offsetBy: 7)..<close]),
                routes.indices.contains(index), case .object(let members) = routes[index], case .string(let name)? = members.value("name")
            else { return text }
            let rest = text[text.index(after: close)...].drop { $0 == "." }
            return "route \(name): \(rest)"
        }
    }

    private struct Importer {
        let document: JSONValue
        let options: Options
        var routes: [JSONValue] = []
        var notes: [String] = []
        private var names: Set<String> = []

        init(document: JSONValue, options: Options) {
            self.document = document
            self.options = options
        }

        mutating func addRoute(path: String, method: String, operation: [(key: String, value: JSONValue)], parameters: [JSONValue]) {
            let label = "\(method.uppercased()) \(path)"
            var name = options.namePrefix + Self.slug(operation.string("operationId") ?? "\(method)-\(path)")
            if !names.insert(name).inserted {
                var number = 2
                while !names.insert("\(name)-\(number)").inserted { number += 1 }
                name = "\(name)-\(number)"
            }
            let prefix = options.prefix.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? ""
            var match: [(key: String, value: JSONValue)] = []
            var variables: [String: String] = [:]
            if path.contains("{") {
                let made = template(path, label: label)
                variables = made.variables
                match.append(("path_template", .string(prefix + made.template)))
            } else {
                match.append(("path", .string(prefix + path)))
            }
            match.append(("methods", .array([.string(method.uppercased())])))
            var route: [(key: String, value: JSONValue)] = [("name", .string(name)), ("match", .object(match)), ("upstream", .string(options.upstream))]
            if !prefix.isEmpty { route.append(("strip_prefix", .string(prefix))) }
            if options.validate {
                var validation = bodyValidation(operation, label: label)
                let schemas = [
                    ("path_schema", parameterSchema(parameters, in: "path", label: label) { variables[$0] }),
                    ("header_schema", parameterSchema(parameters, in: "header", label: label) { Self.ignoredHeaders.contains($0.lowercased()) ? nil : $0 }),
                    ("query_schema", parameterSchema(parameters, in: "query", label: label) { $0 }),
                ]
                validation.insert(contentsOf: schemas.compactMap { key, schema in schema.map { (key, $0) } }, at: 0)
                for case .object(let parameter) in parameters.map({ resolve($0, label: label) }) where parameter.string("in") == "cookie" {
                    notes.append("\(label): cookie parameter \(parameter.string("name") ?? "?") is not checked")
                }
                if !validation.isEmpty { route.append(("request_validation", .object(validation))) }
            }
            if operation.value("deprecated") == .bool(true) {
                notes.append("\(label): deprecated in the description; give route \(name) a deprecation with its dates")
            }
            if case .array(let requirements)? = operation.value("security") ?? rootValue("security") {
                let alternatives = requirements.compactMap { requirement -> [(key: String, value: JSONValue)]? in
                    guard case .object(let members) = requirement, !members.isEmpty else { return nil }
                    return members
                }
                let schemes = Set(alternatives.flatMap { $0.map(\.key) }).sorted()
                if !schemes.isEmpty {
                    if options.auth.isEmpty {
                        securedRoutes[schemes, default: []].append(name)
                    } else {
                        route.append(("auth", auth(alternatives, route: name, label: label)))
                    }
                }
            }
            routes.append(.object(route))
        }

        /// `--auth`: the methods given, and the OAuth scopes the operation requires when every alternative it allows
        /// requires the same ones (a route's `scopes` must all be held, whichever credential came).
        private mutating func auth(_ alternatives: [[(key: String, value: JSONValue)]], route: String, label: String) -> JSONValue {
            var auth: [(key: String, value: JSONValue)] = [("require", .array(options.auth.map { .string($0) }))]
            let scopeSets = alternatives.map { requirement in
                Set(requirement.flatMap { scheme -> [String] in
                    guard case .array(let scopes) = scheme.value else { return [] }
                    return scopes.compactMap { if case .string(let scope) = $0 { return scope } else { return nil } }
                })
            }
            if let first = scopeSets.first, !first.isEmpty {
                if scopeSets.allSatisfy({ $0 == first }) {
                    auth.append(("scopes", .array(first.sorted().map { .string($0) })))
                } else {
                    notes.append("\(label): its security alternatives require different scopes; route \(route) checks none")
                }
            }
            return .object(auth)
        }

        /// Routes by the security schemes their operations require (any one of them), for one note per set.
        private var securedRoutes: [[String]: [String]] = [:]

        /// One note per set of security schemes: which routes need them, and the `auth.require` each maps to.
        mutating func noteSecurity() {
            for (schemes, names) in securedRoutes.sorted(by: { $0.value[0] < $1.value[0] }) {
                let described = schemes.map { scheme in "\(scheme) (\(authHint(scheme)))" }.joined(separator: " or ")
                notes.append("\(names.joined(separator: ", ")): the description requires \(described); give these routes that auth")
            }
        }

        /// The gateway credential an OpenAPI security scheme corresponds to.
        private func authHint(_ scheme: String) -> String {
            guard case .object(let components)? = rootValue("components"), case .object(let schemes)? = components.value("securitySchemes"),
                case .object(let definition)? = schemes.value(scheme)
            else { return "not described under components.securitySchemes" }
            switch (definition.string("type"), definition.string("scheme")?.lowercased()) {
            case ("http", "bearer"?): return definition.string("bearerFormat")?.uppercased() == "JWT" ? "auth.require jwt" : "auth.require jwt or introspection"
            case ("http", "basic"?): return "auth.require basic"
            case ("apiKey", _): return "auth.require api_key (the gateway reads X-API-Key or Authorization: Bearer)"
            case ("oauth2", _), ("openIdConnect", _): return "auth.require jwt or introspection; oidc for browser logins"
            case ("mutualTLS", _): return "auth.require mtls"
            default: return "no gateway credential matches it"
            }
        }

        private func rootValue(_ key: String) -> JSONValue? {
            guard case .object(let root) = document else { return nil }
            return root.value(key)
        }

        /// `/users/{user-id}/files/{name}.json` -> `/users/{user_id}/files/*`: a variable takes a whole segment here.
        /// The path as a `path_template`, and the template variable each OpenAPI parameter became (`order-id` is
        /// `{order_id}`); a segment mixing text and a variable becomes `*` and has none.
        private mutating func template(_ path: String, label: String) -> (template: String, variables: [String: String]) {
            var variables: [String: String] = [:]
            let segments = path.split(separator: "/", omittingEmptySubsequences: false).map { segment -> String in
                guard segment.contains("{") else { return String(segment) }
                if segment.hasPrefix("{"), segment.hasSuffix("}"), segment.dropFirst().dropLast().allSatisfy({ $0 != "{" && $0 != "}" }) {
                    let parameter = String(segment.dropFirst().dropLast())
                    let name = String(parameter.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
                    variables[parameter] = name
                    return "{" + name + "}"
                }
                notes.append("\(label): segment \"\(segment)\" mixes text and a variable; the route matches any segment there")
                return "*"
            }
            return (segments.joined(separator: "/"), variables)
        }

        /// The operation's JSON body schema as `request_validation` keys; none without a JSON body (or one to check).
        private mutating func bodyValidation(_ operation: [(key: String, value: JSONValue)], label: String) -> [(key: String, value: JSONValue)] {
            guard let body = operation.value("requestBody").map({ resolve($0, label: label) }), case .object(let request) = body,
                case .object(let content)? = request.value("content")
            else { return [] }
            let json = content.filter { MediaType.isJSON($0.key) }
            guard let schema = json.first.flatMap({ entry -> JSONValue? in
                guard case .object(let media) = entry.value else { return nil }
                return media.value("schema")
            }) else { return [] }
            if json.count < content.count {
                notes.append("\(label): takes \(content.filter { !MediaType.isJSON($0.key) }.map(\.key).joined(separator: ", ")) too; its bodies are not checked")
                return []
            }
            var stack: [String] = []
            var validation: [(key: String, value: JSONValue)] = [("body_schema", convert(schema, at: label + " body", stack: &stack))]
            if request.value("required") != .bool(true) { validation.append(("body_required", .bool(false))) }
            return validation
        }

        /// OpenAPI says to ignore header parameters by these names: the media types and the credentials are described
        /// elsewhere (`requestBody`, `security`).
        static let ignoredHeaders: Set<String> = ["accept", "content-type", "authorization"]

        /// The operation's parameters of one kind (`in`: `query`, `path` or `header`) as the `request_validation` schema
        /// of that part (each name once, the operation's own over the path's); nil when it has none. `name` gives the
        /// property a parameter checks (a template's variable), nil to leave it out. A parameter not written as the
        /// gateway reads that part (query: `form` with `explode`, one parameter per value; path and header: `simple`,
        /// lists comma-separated) is left unchecked and noted.
        private mutating func parameterSchema(_ parameters: [JSONValue], in location: String, label: String, name: (String) -> String?) -> JSONValue? {
            var properties: [(key: String, value: JSONValue)] = []
            var required: [JSONValue] = []
            let style = location == "query" ? "form" : "simple"
            for raw in parameters {
                guard case .object(let parameter) = resolve(raw, label: label), parameter.string("in") == location,
                    let given = parameter.string("name"), let property = name(given),
                    !properties.contains(where: { location == "header" ? $0.key.lowercased() == property.lowercased() : $0.key == property })
                else { continue }
                var schema = JSONValue.bool(true)
                if (parameter.string("style") ?? style) != style || (location == "query" && parameter.value("explode") == .bool(false)) {
                    notes.append("\(label): \(location) parameter \(given) is not written the way the gateway reads it (style/explode); not checked")
                } else if let described = parameter.value("schema") {
                    var stack: [String] = []
                    schema = convert(described, at: "\(label) \(location) \(given)", stack: &stack)
                } else {
                    notes.append("\(label): \(location) parameter \(given) has no schema; not checked")
                }
                properties.append((property, schema))
                // Path variables are always there when the route matches.
                if location != "path", parameter.value("required") == .bool(true) { required.append(.string(property)) }
            }
            guard !properties.isEmpty else { return nil }
            var schema: [(key: String, value: JSONValue)] = required.isEmpty ? [] : [("required", .array(required))]
            schema.append(("properties", .object(properties)))
            return .object(schema)
        }

        /// A `$ref` to somewhere in this document, followed (a chain of them too); anything else as it is.
        private mutating func resolve(_ value: JSONValue, label: String) -> JSONValue {
            var value = value
            var seen: Set<String> = []
            while case .object(let members) = value, case .string(let ref)? = members.value("$ref") {
                guard seen.insert(ref).inserted, let target = lookup(ref) else {
                    notes.append("\(label): $ref \"\(ref)\" does not lead to anything in this document")
                    return .object([])
                }
                value = target
            }
            return value
        }

        /// `#/components/schemas/Order` (RFC 6901 pointer in this document).
        private func lookup(_ ref: String) -> JSONValue? {
            guard ref.hasPrefix("#/") else { return nil }
            var value = document
            for raw in ref.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) {
                let key = String(raw).replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
                switch value {
                case .object(let members):
                    guard let next = members.value(key) else { return nil }
                    value = next
                case .array(let items):
                    guard let index = Int(key), items.indices.contains(index) else { return nil }
                    value = items[index]
                default:
                    return nil
                }
            }
            return value
        }

        private static let copied: Set<String> = [
            "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
            "minItems", "maxItems", "required", "minProperties", "maxProperties",
        ]
        private static let annotations: Set<String> = [
            "title", "description", "example", "examples", "default", "deprecated", "readOnly", "writeOnly", "xml", "externalDocs",
            "discriminator", "$schema", "$id", "$comment", "contentMediaType", "contentEncoding",
        ]
        private static let formats = Set(JSONSchema.Format.allCases.map(\.rawValue))
        /// Formats that only say how a number or string is stored: nothing to check at the edge.
        private static let storageFormats: Set<String> = ["int32", "int64", "float", "double", "byte", "binary", "password"]

        /// An OpenAPI schema object as the gateway's JSON Schema; `where` names it in notes.
        private mutating func convert(_ schema: JSONValue, at place: String, stack: inout [String]) -> JSONValue {
            if case .bool = schema { return schema }
            if case .object(let members) = schema, case .string(let ref)? = members.value("$ref") {
                if stack.contains(ref) {
                    notes.append("\(place): \(ref) contains itself; below this point bodies are not checked")
                    return .bool(true)
                }
                guard let target = lookup(ref) else {
                    notes.append("\(place): $ref \"\(ref)\" does not lead to anything in this document; not checked")
                    return .bool(true)
                }
                stack.append(ref)
                defer { stack.removeLast() }
                return convert(target, at: place, stack: &stack)
            }
            guard case .object(let members) = schema else { return .bool(true) }
            var result: [(key: String, value: JSONValue)] = []
            let nullable = members.value("nullable") == .bool(true)
            for (key, value) in members {
                switch key {
                case "type" where nullable:
                    if case .string(let type) = value { result.append((key, .array([.string(type), .string("null")]))) } else { result.append((key, value)) }
                case "enum" where nullable:
                    if case .array(let values) = value, !values.contains(.null) { result.append((key, .array(values + [.null]))) } else { result.append((key, value)) }
                case "exclusiveMinimum", "exclusiveMaximum":
                    // OpenAPI 3.0: a boolean that makes minimum/maximum exclusive; 3.1: the bound itself.
                    if case .bool(let exclusive) = value {
                        let bound = members.value(key == "exclusiveMinimum" ? "minimum" : "maximum")
                        if exclusive, let bound { result.append((key, bound)) }
                    } else {
                        result.append((key, value))
                    }
                case "minimum" where members.value("exclusiveMinimum") == .bool(true), "maximum" where members.value("exclusiveMaximum") == .bool(true):
                    break  // became the exclusive bound above
                case _ where Self.copied.contains(key):
                    result.append((key, value))
                case "format":
                    guard case .string(let format) = value else { break }
                    if Self.formats.contains(format) {
                        result.append((key, value))
                    } else if !Self.storageFormats.contains(format) {
                        notes.append("\(place): format \"\(format)\" is not checked")
                    }
                case "properties":
                    guard case .object(let properties) = value else { break }
                    result.append((key, .object(properties.map { ($0.key, convert($0.value, at: place + "." + $0.key, stack: &stack)) })))
                case "items", "additionalProperties", "not":
                    result.append((key, convert(value, at: place + (key == "items" ? "[]" : ""), stack: &stack)))
                case "allOf", "anyOf", "oneOf":
                    guard case .array(let schemas) = value else { break }
                    result.append((key, .array(schemas.map { convert($0, at: place, stack: &stack) })))
                case "nullable":
                    if members.value("type") == nil && members.value("enum") == nil { break }  // nothing it widens
                case _ where Self.annotations.contains(key) || key.hasPrefix("x-"):
                    break
                default:
                    notes.append("\(place): \(key) is not checked")
                }
            }
            return .object(result)
        }

        /// Route names: letters, digits, `-`, `_` and `.`, as gateway.json's other names.
        private static func slug(_ text: String) -> String {
            var slug = ""
            for character in text {
                if character.isASCII && (character.isLetter || character.isNumber || character == "_" || character == ".") {
                    slug.append(character)
                } else if !slug.isEmpty && slug.last != "-" {
                    slug.append("-")
                }
            }
            while slug.last == "-" { slug.removeLast() }
            return slug.isEmpty ? "route" : slug
        }
    }
}

extension [(key: String, value: JSONValue)] {
    fileprivate func value(_ key: String) -> JSONValue? { first { $0.key == key }?.value }
    fileprivate func string(_ key: String) -> String? {
        if case .string(let text)? = value(key) { return text }
        return nil
    }
}
