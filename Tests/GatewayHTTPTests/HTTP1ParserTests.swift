import GatewayHTTP
import NIOCore
import Testing
import TestSupport

@Suite struct HTTP1ParserTests {
    func parseRequest(_ text: String, maxHeadBytes: Int = 16384) throws(HTTPParseError) -> ParsedRequest? {
        var parser = HTTP1HeadParser(maxHeadBytes: maxHeadBytes)
        var buffer = ByteBuffer(string: text)
        return try parser.parseRequest(&buffer)
    }

    // A typical request: method, target, version, fields with their spacing normalised.
    @Test func parsesRequestHead() throws {
        let parsed = try #require(try parseRequest("GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Spaced:\t  v a l  \r\nAccept: */*\r\n\r\n"))
        #expect(parsed.head.method == .GET)
        #expect(parsed.head.target == "/a/b?c=d")
        #expect(parsed.head.path == "/a/b")
        #expect(parsed.head.version == .http1_1)
        #expect(parsed.head.headers.first(name: "HOST") == "example.com")
        #expect(parsed.head.headers.first(name: "x-spaced") == "v a l")
        #expect(parsed.framing == .none)
        #expect(parsed.keepAlive)
        var out = ByteBuffer()
        HTTP1Writer.write(parsed.head, to: &out)
        #expect(String(buffer: out) == "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Spaced: v a l\r\nAccept: */*\r\n\r\n")
    }

    // Status lines carry the status in decimal whatever its width, the version and the reason as given.
    @Test func writesStatusLines() {
        for (status, version, line) in [
            (200, HTTPVersion.http1_1, "HTTP/1.1 200 OK\r\n"), (404, .http1_0, "HTTP/1.0 404 Not Found\r\n"),
            (7, .http1_1, "HTTP/1.1 7 \r\n"), (1234, .http1_1, "HTTP/1.1 1234 \r\n"), (-5, .http1_1, "HTTP/1.1 -5 \r\n"),
        ] {
            var out = ByteBuffer()
            HTTP1Writer.write(ResponseHead(status: status, version: version, headers: HeaderList([("A", "1")])), to: &out)
            #expect(String(buffer: out) == line + "A: 1\r\n\r\n")
        }
    }

    // The head may arrive a byte at a time; nothing is returned until it is complete, and body bytes stay.
    @Test func parsesIncrementally() throws {
        let text = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        var parser = HTTP1HeadParser(maxHeadBytes: 1024)
        var buffer = ByteBuffer()
        var parsed: ParsedRequest?
        for byte in text.utf8 {
            buffer.writeInteger(byte)
            if parsed == nil { parsed = try parser.parseRequest(&buffer) }
        }
        let request = try #require(parsed)
        #expect(request.framing == .length(3))
        #expect(String(buffer: buffer) == "abc")
    }

    // Framing and keep-alive from the fields that decide them.
    @Test func framing() throws {
        #expect(try parseRequest("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")?.framing == .chunked)
        #expect(try parseRequest("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")?.framing == BodyFraming.none)
        #expect(try parseRequest("POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n")?.framing == .length(7))
        #expect(try parseRequest("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n")?.framing == .length(7))
        #expect(try parseRequest("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")?.keepAlive == false)
        #expect(try parseRequest("GET / HTTP/1.0\r\n\r\n")?.keepAlive == false)
        #expect(try parseRequest("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?.keepAlive == true)
        #expect(try parseRequest("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")?.expectsContinue == true)
        // Leading empty lines before a request line are ignored (RFC 9112 §2.2).
        #expect(try parseRequest("\r\n\r\nGET / HTTP/1.1\r\n\r\n")?.head.method == .GET)
    }

    // Everything a smuggler or a broken client might send is refused.
    @Test(arguments: [
        "GET / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nX : a\r\n\r\n",
        "GET / HTTP/1.1\r\n: a\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "G@T / HTTP/1.1\r\n\r\n",
        "GET /a\u{7F} HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ])
    func rejectsMalformed(_ text: String) {
        do {
            let error = thrownError { _ = try parseRequest(text) }
            #expect(error is HTTPParseError, "\(String(describing: error))")
        }
    }

    // Heads over the limit are refused as too large, whether or not they are complete yet.
    @Test func headSizeLimit() {
        let big = "GET / HTTP/1.1\r\nX: \(String(repeating: "a", count: 2000))\r\n\r\n"
        do {
            let error = thrownError { _ = try parseRequest(big, maxHeadBytes: 1024) }
            #expect(error as? HTTPParseError == HTTPParseError.headTooLarge, "\(String(describing: error))")
        }
        do {
            let error = thrownError { _ = try parseRequest(String(big.prefix(1500)), maxHeadBytes: 1024) }
            #expect(error as? HTTPParseError == HTTPParseError.headTooLarge, "\(String(describing: error))")
        }
        #expect(try! parseRequest(String(big.prefix(500)), maxHeadBytes: 1024) == nil)
        // A request line that alone fills the limit is a target too long (414), complete or not.
        let longTarget = "GET /\(String(repeating: "a", count: 2000)) HTTP/1.1\r\nHost: x\r\n\r\n"
        for text in [longTarget, String(longTarget.prefix(1500))] {
            let error = thrownError { _ = try parseRequest(text, maxHeadBytes: 1024) }
            #expect(error as? HTTPParseError == HTTPParseError.firstLineTooLong, "\(String(describing: error))")
        }
        // Its end seen in an earlier read, the head is what is too large.
        var parser = HTTP1HeadParser(maxHeadBytes: 1024)
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nX: ")
        #expect(try! parser.parseRequest(&buffer) == nil)
        buffer.writeString(String(repeating: "a", count: 2000))
        let later = thrownError { _ = try parser.parseRequest(&buffer) }
        #expect(later as? HTTPParseError == HTTPParseError.headTooLarge, "\(String(describing: later))")
        let many = "GET / HTTP/1.1\r\n" + (0..<101).map { "X-\($0): 1\r\n" }.joined() + "\r\n"
        do {
            let error = thrownError { _ = try parseRequest(many, maxHeadBytes: 1 << 20) }
            #expect(error as? HTTPParseError == HTTPParseError.headTooLarge, "\(String(describing: error))")
        }
    }

    // Response heads: status, reason, framing by method and status, keep-alive.
    @Test func parsesResponses() throws {
        func parse(_ text: String, method: HTTPMethod = .GET) throws(HTTPParseError) -> ParsedResponse? {
            var parser = HTTP1HeadParser(maxHeadBytes: 4096)
            var buffer = ByteBuffer(string: text)
            return try parser.parseResponse(&buffer, requestMethod: method)
        }
        let ok = try #require(try parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\n"))
        #expect(ok.head.status == 200)
        #expect(ok.head.reason == nil)
        #expect(ok.framing == .length(5))
        #expect(ok.keepAlive)
        #expect(try parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", method: .HEAD)?.framing == BodyFraming.none)
        #expect(try parse("HTTP/1.1 204 No Content\r\n\r\n")?.framing == BodyFraming.none)
        #expect(try parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n")?.framing == BodyFraming.none)
        #expect(try parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?.framing == .chunked)
        let closeDelimited = try #require(try parse("HTTP/1.1 200 OK\r\n\r\n"))
        #expect(closeDelimited.framing == .untilClose)
        #expect(!closeDelimited.keepAlive)
        #expect(try parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n")?.keepAlive == false)
        #expect(try parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n")?.keepAlive == false)
        #expect(try parse("HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n")?.head.reason == "I'm a teapot")
        #expect(try parse("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")?.head.status == 200)
        do {
            let error = thrownError { _ = try parse("HTTP/1.1 2000 OK\r\n\r\n") }
            #expect(error is HTTPParseError, "\(String(describing: error))")
        }
        do {
            let error = thrownError { _ = try parse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n") }
            #expect(error is HTTPParseError, "\(String(describing: error))")
        }
        do {
            let error = thrownError { _ = try parse("ICY 200 OK\r\n\r\n") }
            #expect(error is HTTPParseError, "\(String(describing: error))")
        }
    }
}

@Suite struct BodyDecoderTests {
    func decodeAll(_ framing: BodyFraming, _ pieces: [String]) throws(HTTPParseError) -> (body: String, ended: Bool, rest: String) {
        var decoder = BodyDecoder(framing: framing, maxLineBytes: 64)
        var buffer = ByteBuffer()
        var body = ""
        var ended = false
        for piece in pieces {
            buffer.writeString(piece)
            while !ended, let event = try decoder.next(&buffer) {
                switch event {
                case .data(let data): body += String(buffer: data)
                case .end: ended = true
                }
            }
        }
        return (body, ended, String(buffer: buffer))
    }

    // Content-Length bodies end exactly at their length; what follows is the next request.
    @Test func lengthBodies() throws {
        let result = try decodeAll(.length(5), ["he", "llo", "GET"])
        #expect(result.body == "hello")
        #expect(result.ended)
        #expect(result.rest == "GET")
    }

    // Chunked bodies, split anywhere, with extensions and trailers.
    @Test func chunkedBodies() throws {
        let wire = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
        for split in 0...wire.count {
            let index = wire.index(wire.startIndex, offsetBy: split)
            let result = try decodeAll(.chunked, [String(wire[..<index]), String(wire[index...])])
            #expect(result.body == "hello world")
            #expect(result.ended)
            #expect(result.rest == "NEXT")
        }
        #expect(try decodeAll(.chunked, ["A\r\n0123456789\r\n0\r\n\r\n"]).body == "0123456789")
        #expect(try decodeAll(.chunked, ["0000000000000000000A\r\n0123456789\r\n0\r\n\r\n"]).body == "0123456789")
    }

    @Test(arguments: [
        "5\r\nhelloXX0\r\n\r\n", "g\r\n", "\r\n", "5\nhello\r\n", "11111111111111111\r\n", "5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n",
        "5;\u{1}\r\nhello\r\n",
        // Found by fuzz-http: 16 hex digits wrapped to a negative size and crashed the decoder.
        "BBBBBBBBBBBBBBBB\t\t\r\n\r\n", "8000000000000000\r\n", "FFFFFFFFFFFFFFFF\r\nx\r\n",
    ])
    func rejectsMalformedChunks(_ wire: String) {
        do {
            let error = thrownError { _ = try decodeAll(.chunked, [wire]) }
            #expect(error is HTTPParseError, "\(String(describing: error))")
        }
    }

    // An overlong size line or trailer section is refused rather than buffered forever.
    @Test func boundsLines() {
        do {
            let error = thrownError { _ = try decodeAll(.chunked, ["5;" + String(repeating: "e", count: 100)]) }
            #expect(error is HTTPParseError, "\(String(describing: error))")
        }
        do {
            let error = thrownError { _ = try decodeAll(.chunked, ["0\r\nX: " + String(repeating: "t", count: 100)]) }
            #expect(error is HTTPParseError, "\(String(describing: error))")
        }
    }

    // End of input completes a close-delimited body and is an error for the others.
    @Test func endOfInput() throws {
        var untilClose = BodyDecoder(framing: .untilClose)
        #expect(try untilClose.endOfInput() == .end)
        var length = BodyDecoder(framing: .length(3))
        do {
            let error = thrownError { _ = try length.endOfInput() }
            #expect(error is HTTPParseError, "\(String(describing: error))")
        }
    }
}

@Suite struct HeaderListTests {
    func headers(_ text: String) throws -> HeaderList {
        var parser = HTTP1HeadParser(maxHeadBytes: 4096)
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\n" + text + "\r\n")
        return try #require(try parser.parseRequest(&buffer)).head.headers
    }

    // Names compare ignoring ASCII case only: small (inline) and heap strings alike, and bytes that differ by
    // 0x20 outside the letters ("[" and "{") or outside ASCII stay different.
    @Test func namesCompareIgnoringASCIICase() {
        #expect("Content-Type".equalsCaseInsensitively("content-type"))
        #expect("X-RateLimit-Remaining-Long-Name".equalsCaseInsensitively("x-ratelimit-remaining-long-name"))
        #expect(!"x-ratelimit-remaining-long-name".equalsCaseInsensitively("x-ratelimit-remaining-long-namf"))
        #expect(!"content-type".equalsCaseInsensitively("content-typ"))
        #expect(!"a[".equalsCaseInsensitively("a{"))
        #expect(!"\u{C0}".equalsCaseInsensitively("\u{E0}"))
        #expect("".equalsCaseInsensitively(""))
    }

    // Received and added fields read, change and serialise alike.
    @Test func editing() throws {
        var list = try headers("A: 1\r\nB: 2\r\na: 3\r\n")
        #expect(list["a"] == ["1", "3"])
        #expect(list.count == 3)
        list.add(name: "C", value: "4")
        list.replaceOrAdd(name: "a", value: "5")
        #expect(list["A"] == ["5"])
        #expect(list.contains(name: "b"))
        list.remove(name: "B")
        #expect(!list.contains(name: "b"))
        let fields = list.map { "\($0.name)=\($0.value)" }
        #expect(fields == ["C=4", "a=5"])
        var out = ByteBuffer()
        list.write(to: &out)
        #expect(String(buffer: out) == "C: 4\r\na: 5\r\n")
    }

    // Serialising copies runs of canonical received lines as they are and rewrites the others; removed
    // fields break a run, and what was added follows.
    @Test func writesReceivedLinesCanonically() throws {
        var list = try headers("A: 1\r\nB: 2\r\nC:3\r\nD: 4\r\nE:  5 \r\nF: 6\r\nG: 7\r\nH: \r\nI:\r\n")
        var out = ByteBuffer()
        list.write(to: &out)
        #expect(String(buffer: out) == "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: \r\nI: \r\n")
        #expect(out.readableBytes == list.serializedSize)

        list.remove(name: "b")
        list.remove(name: "g")
        list.add(name: "Z", value: "9")
        out.clear()
        list.write(to: &out)
        #expect(String(buffer: out) == "A: 1\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nH: \r\nI: \r\nZ: 9\r\n")
        #expect(out.readableBytes == list.serializedSize)
    }

    @Test func tokens() throws {
        let list = try headers("Connection: keep-alive, Upgrade\r\nconnection: X-Foo\r\n")
        #expect(list.containsToken("upgrade", inField: "connection"))
        #expect(list.containsToken("x-foo", inField: "Connection"))
        #expect(!list.containsToken("close", inField: "connection"))
        #expect(list.connectionTokens == (close: false, keepAlive: true))
    }

    // Lookups skip the scan when the list's name summary rules a name out: every name that is here (received or
    // added, in any case, among 300 names of every length, so many share a summary bit and many do not) must
    // still be found by every kind of lookup, and names that are not here must not be.
    @Test func everyPresentNameIsFoundWhateverItsCase() throws {
        let names = (1...300).map { index in
            let letters = "abcdefghijklmnopqrstuvwxyz"
            let last = letters[letters.index(letters.startIndex, offsetBy: index % 26)]
            return "x-" + String(repeating: "n", count: index % 40) + "\(index)" + String(last)
        }
        let received = names.enumerated().filter { $0.offset % 3 == 0 }.map(\.element)
        let addedNames = names.enumerated().filter { $0.offset % 3 == 1 }.map(\.element)
        let absent = names.enumerated().filter { $0.offset % 3 == 2 }.map(\.element)
        var parser = HTTP1HeadParser(maxHeadBytes: 65536, maxFields: 400)
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\n" + received.map { "\($0.uppercased()): v, tok\r\n" }.joined() + "\r\n")
        var list = try #require(try parser.parseRequest(&buffer)).head.headers
        for name in addedNames { list.add(name: name.uppercased(), value: "v, tok") }
        let fromPairs = HeaderList(addedNames.map { ($0.uppercased(), "v") })
        for name in received + addedNames {
            #expect(list.contains(name: name), "\(name)")
            #expect(list.first(name: name) == "v, tok", "\(name)")
            #expect(list[name] == ["v, tok"] && list.values(name: name) == ["v, tok"], "\(name)")
            #expect(list.count(name: name) == 1 && list.firstAndCount(name: name).count == 1, "\(name)")
            #expect(list.containsToken("TOK", inField: name), "\(name)")
        }
        for name in received {
            var seen = 0
            list.forEachReceivedValue(name: name) { _ in seen += 1 }
            #expect(seen == 1, "\(name)")
        }
        for name in addedNames {
            #expect(list.addedValues(name: name) == ["v, tok"], "\(name)")
            #expect(fromPairs.contains(name: name), "\(name)")
        }
        for name in absent {
            #expect(!list.contains(name: name) && list.first(name: name) == nil && list.count(name: name) == 0, "\(name)")
        }
        for name in received + addedNames { list.remove(name: name) }
        #expect(list.isEmpty)
        list.add(name: received[0], value: "again")
        #expect(list.first(name: received[0].uppercased()) == "again")
    }
}
