import GatewayConfig
import GatewayCore
import GatewayHTTP
import Testing

@Suite struct ErrorInterceptionTests {
    static func head(_ status: Int, _ fields: [(String, String)] = []) -> ResponseHead {
        ResponseHead(status: status, headers: HeaderList(fields))
    }

    // The route's setting wins over the top level's; disabled or absent on both is no interception at all.
    @Test func routeSettingReplacesTheTopLevel() {
        var off = InterceptErrorsConfig()
        off.enabled = false
        #expect(ErrorInterception(route: nil, global: nil) == nil)
        #expect(ErrorInterception(route: off, global: InterceptErrorsConfig()) == nil)
        var only404 = InterceptErrorsConfig()
        only404.statuses = [404]
        let route = ErrorInterception(route: only404, global: InterceptErrorsConfig())
        #expect(route?.intercepts(Self.head(404)) == true)
        #expect(route?.intercepts(Self.head(500)) == false)
        let inherited = ErrorInterception(route: nil, global: InterceptErrorsConfig())
        #expect(inherited?.intercepts(Self.head(503)) == true)
        #expect(inherited?.intercepts(Self.head(404)) == false)
        #expect(inherited?.intercepts(Self.head(200)) == false)
    }

    // keep_json: JSON and +json types pass whatever their parameters or case; other types and no type are replaced.
    @Test func jsonAnswersPassWhenAsked() throws {
        var config = InterceptErrorsConfig()
        config.keepJSON = true
        let interception = try #require(ErrorInterception(route: config, global: nil))
        for type in ["application/json", "Application/JSON; charset=utf-8", "application/problem+json", " application/vnd.api+json ;x=1"] {
            #expect(!interception.intercepts(Self.head(500, [("Content-Type", type)])), "\(type)")
        }
        for type in ["text/html", "text/json", "application/jsonp", "text/plain; format=application/json"] {
            #expect(interception.intercepts(Self.head(500, [("Content-Type", type)])), "\(type)")
        }
        #expect(interception.intercepts(Self.head(500)))
    }

    // The answer: the upstream's status, the JSON error shape, only the kept fields (every value of each).
    @Test func answerKeepsStatusAndListedFields() throws {
        let interception = try #require(ErrorInterception(route: InterceptErrorsConfig(), global: nil))
        let upstream = Self.head(
            401, [("WWW-Authenticate", "Bearer"), ("www-authenticate", "Basic realm=\"x\""), ("Set-Cookie", "a=1"), ("X-Debug", "trace"), ("Content-Type", "text/html")])
        let answer = interception.answer(for: upstream, requestID: "req-1")
        #expect(answer.head.status == 401)
        #expect(answer.errorCode == "UPSTREAM_ERROR")
        #expect(answer.head.headers["www-authenticate"] == ["Bearer", "Basic realm=\"x\""])
        #expect(answer.head.headers["set-cookie"].isEmpty && answer.head.headers["x-debug"].isEmpty)
        #expect(answer.head.headers["content-type"] == ["application/json"])
        let body = String(buffer: try #require(answer.body))
        #expect(body == #"{"error":{"code":"UPSTREAM_ERROR","message":"The upstream service answered 401 Unauthorized.","request_id":"req-1"}}"# + "\n")
        #expect(String(buffer: try #require(interception.answer(for: Self.head(599), requestID: "r").body)).contains("answered 599."))
    }
}
