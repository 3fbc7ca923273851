import GatewayConfig
import Testing

/// `match.path_template` and `rewrite_path` without sockets.
@Suite struct PathTemplateTests {
    static func template(_ text: String) throws -> PathTemplate { try PathTemplate.parse(text).get() }

    static func problem(_ text: String) -> String? {
        if case .failure(let error) = PathTemplate.parse(text) { return error.description }
        return nil
    }

    @Test func parsing() throws {
        #expect(try Self.template("/users/{id}/orders/{rest=**}").variables == ["id", "rest"])
        #expect(try Self.template("/a/*/b/**").variables.isEmpty)
        #expect(Self.problem("users/{id}") == #"must start with "/""#)
        #expect(Self.problem("/a/**/b") == "** (the rest of the path) can only be the last segment")
        #expect(Self.problem("/a/{x}/{x}") == "{x} appears twice")
        #expect(Self.problem("/a/{x-y}") == #""{x-y}" is not a variable (letters, digits and _ between braces, e.g. {id} or {path=**})"#)
        #expect(Self.problem("/a/v{n}") == #""v{n}": a variable takes a whole segment ({name}, *, or {name=**} last)"#)
        #expect(Self.problem("/a//b") == "empty segment (//)")
    }

    @Test func matching() throws {
        let orders = try Self.template("/users/{id}/orders")
        #expect(orders.match("/users/42/orders") == ["id": "42"])
        #expect(orders.match("/USERS/42/Orders") == ["id": "42"], "literals ignore ASCII case; values keep theirs")
        #expect(orders.match("/users/42") == nil)
        #expect(orders.match("/users//orders") == nil, "a variable is never empty")
        #expect(orders.match("/users/42/orders/7") == nil)
        #expect(orders.match("/users/42/orders/") == nil)

        let files = try Self.template("/files/{path=**}")
        #expect(files.match("/files/a/b.txt") == ["path": "a/b.txt"])
        #expect(files.match("/files/") == ["path": ""])
        #expect(files.match("/files") == ["path": ""], "the rest may be empty")
        #expect(files.match("/filesx") == nil)

        let any = try Self.template("/v/*/items/**")
        #expect(any.match("/v/2/items") == [:])
        #expect(any.match("/v/2/items/9/x") == [:])
        #expect(any.match("/v/2/other") == nil)
    }

    // More literal text is more specific, on the scale of prefixes (1 + their bytes).
    @Test func specificity() throws {
        #expect(try Self.template("/users/{id}/orders").specificity > 1 + "/users".utf8.count)
        #expect(try Self.template("/users/{id}/orders").specificity > Self.template("/users/{id}/{what}").specificity)
    }

    @Test func rewriting() throws {
        let template = try Self.template("/users/{id}/orders/{rest=**}")
        let rewrite = try PathRewrite.parse("/v2/accounts/{id}/orders/{rest}", for: template).get()
        let captures = try #require(template.match("/users/42/orders/7/lines"))
        #expect(rewrite.apply(captures) == "/v2/accounts/42/orders/7/lines")
        if case .failure(let error) = PathRewrite.parse("/v2/{user}", for: template) {
            #expect(error.description == "{user} is not a variable of the path_template (it has {id}, {rest})")
        } else {
            Issue.record("an unknown variable must be refused")
        }
        if case .failure(let error) = PathRewrite.parse("/v2/{id", for: template) {
            #expect(error.description == "a { without its }")
        } else {
            Issue.record("an unclosed brace must be refused")
        }
    }
}
