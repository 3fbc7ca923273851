import DemoUpstream
import Foundation
import Testing
import TestSupport

/// The real `gateway` executable: memory while streaming gigabytes, graceful stop, and the CLI.
@Suite(.serialized) struct ProcessTests {
    static func config(upstreamPort: Int, extraLimits: String = "") -> String {
        """
        { "workers": 2,
          "listeners": [{ "name": "public", "address": "127.0.0.1", "port": 0 }],
          "limits": { "max_body_bytes": 4294967296 \(extraLimits) },
          "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreamPort)"] } },
          "routes": [{ "name": "all", "upstream": "demo" }] }
        """
    }

    // 1 GiB down and 1 GiB up stream through the gateway while its resident memory stays under 100 MiB.
    @Test(.timeLimit(.minutes(5))) func streamsGigabytesInBoundedMemory() async throws {
        try await withUpstreams { upstreams in
            let gateway = try GatewayProcess(config: Self.config(upstreamPort: upstreams[0].port))
            try await gateway.start()
            let gib = 1 << 30
            let base = "http://127.0.0.1:\(gateway.port)"

            let download = try await shell("curl -sS -o /dev/null -w '%{size_download} %{http_code}' \(base)/bytes/\(gib)")
            #expect(download.stdout == "\(gib) 200", "\(download.stderr)")

            let upload = try await shell(
                "head -c \(gib) /dev/zero | curl -sS -T - -H 'Content-Type: application/octet-stream' \(base)/upload")
            #expect(upload.stdout.contains("\"bytes\":\(gib)"), "\(upload.stdout) \(upload.stderr)")

            let peak = gateway.peakResidentBytes
            #expect(peak > 0)
            // Sanitizer runtimes have memory of their own (shadow memory, quarantines): the bound holds for real builds.
            if TestTime.sanitizer == nil {
                #expect(peak < 100 << 20, "peak RSS \(peak >> 20) MiB")
            }
            gateway.terminate()
            #expect(await gateway.waitForExit(timeout: .seconds(15)) == 0)
        }
    }

    // SIGTERM: the listener closes at once, the request in flight completes, idle connections close, exit 0.
    @Test(.timeLimit(.minutes(1))) func gracefulStopFinishesRequestsInFlight() async throws {
        try await withUpstreams { upstreams in
            let gateway = try GatewayProcess(config: Self.config(upstreamPort: upstreams[0].port))
            try await gateway.start()

            let idle = try await RawClient.connect(port: gateway.port)
            try await idle.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try await idle.readResponse().status == 200)

            let busy = try await RawClient.connect(port: gateway.port)
            try await busy.send("GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
            try await Task.sleep(for: .milliseconds(300))
            gateway.terminate()

            #expect(await idle.waitForClose(timeout: .seconds(3)))
            try await Task.sleep(for: .milliseconds(200))
            let refused = await thrownError(async: { _ = try await RawClient.connect(port: gateway.port) })
            #expect(refused != nil, "the listener is closed")

            let response = try await busy.readResponse(timeout: .seconds(10))
            #expect(response.status == 200)
            #expect(response.json["slept_ms"] as? Int == 1500)
            #expect(response.header("connection") == "close")
            #expect(await gateway.waitForExit(timeout: .seconds(10)) == 0)
            let stopped = gateway.logLines.contains { $0["msg"] as? String == "gateway stopped" }
            #expect(stopped)
        }
    }

    // SIGHUP reloads gateway.json: a good file takes effect, a broken one is refused and changes nothing.
    @Test(.timeLimit(.minutes(1))) func sighupReloads() async throws {
        try await withUpstreams(2) { upstreams in
            let gateway = try GatewayProcess(config: Self.config(upstreamPort: upstreams[0].port))
            try await gateway.start()
            let base = "http://127.0.0.1:\(gateway.port)"
            let before = try await shell("curl -s \(base)/echo")
            #expect(before.stdout.contains(#""upstream":"a""#))

            // The listener stays as it was (port 0 means "the port already bound" to a reload).
            try gateway.rewriteConfig(Self.config(upstreamPort: upstreams[1].port))
            gateway.hangUp()
            var answer = ""
            let deadline = ContinuousClock.now + .seconds(10)
            while !answer.contains(#""upstream":"b""#) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                answer = try await shell("curl -s \(base)/echo").stdout
            }
            #expect(answer.contains(#""upstream":"b""#), "\(gateway.log)")

            try gateway.rewriteConfig(#"{ "listeners": [], "upstreams": {}, "routes": [] }"#)
            gateway.hangUp()
            var refused = false
            let second = ContinuousClock.now + .seconds(10)
            while !refused && ContinuousClock.now < second {
                try await Task.sleep(for: .milliseconds(50))
                refused = gateway.logLines.contains { $0["msg"] as? String == "config reload failed; still running the previous config" }
            }
            #expect(refused)
            #expect(try await shell("curl -s \(base)/echo").stdout.contains(#""upstream":"b""#))
            gateway.terminate()
            #expect(await gateway.waitForExit(timeout: .seconds(10)) == 0)
        }
    }

    // logging.file and logging.access_log_file: the log and the access log in files of their own (nothing on
    // standard output), and after logrotate's rename SIGUSR1 sends new lines to a new file at the same path.
    @Test(.timeLimit(.minutes(1))) func logFilesAndReopen() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-logs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let mainLog = directory.appendingPathComponent("gateway.log")
        let accessLog = directory.appendingPathComponent("access.log")
        func lines(_ url: URL) -> [[String: Any]] {
            ((try? String(contentsOf: url, encoding: .utf8)) ?? "").split(separator: "\n")
                .compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
        }
        func waitFor(_ url: URL, count: Int) async throws -> [[String: Any]] {
            let deadline = ContinuousClock.now + .seconds(10)
            while lines(url).count < count && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            return lines(url)
        }
        try await withUpstreams { upstreams in
            let config = Self.config(upstreamPort: upstreams[0].port).replacingOccurrences(
                of: #"{ "workers": 2,"#,
                with: #"{ "workers": 2, "logging": { "file": "\#(mainLog.path)", "access_log_file": "\#(accessLog.path)" },"#)
            let gateway = try GatewayProcess(config: config, logFile: mainLog)
            try await gateway.start()
            let first = try await shell("curl -s -o /dev/null -w '%{http_code}' -H 'X-Request-ID: first-request' http://127.0.0.1:\(gateway.port)/echo")
            #expect(first.stdout == "200")
            let accessLines = try await waitFor(accessLog, count: 1)
            func messages(_ url: URL) -> [String] { lines(url).compactMap { $0["msg"] as? String } }
            func requestIDs(_ entries: [[String: Any]]) -> [String] { entries.compactMap { $0["request_id"] as? String } }
            #expect(requestIDs(accessLines) == ["first-request"])
            #expect(messages(mainLog).contains("listening"))
            #expect(!messages(mainLog).contains("request"), "access lines only in the access log")

            let rotated = directory.appendingPathComponent("access.log.1")
            try FileManager.default.moveItem(at: accessLog, to: rotated)
            gateway.reopenLogs()
            let reopened = try await waitFor(mainLog, count: lines(mainLog).count + 1)
            let reopenedMessages = reopened.compactMap { $0["msg"] as? String }
            #expect(reopenedMessages.contains("log files reopened"))
            _ = try await shell("curl -s -o /dev/null -H 'X-Request-ID: second-request' http://127.0.0.1:\(gateway.port)/echo")
            let fresh = try await waitFor(accessLog, count: 1)
            #expect(requestIDs(fresh) == ["second-request"])
            #expect(requestIDs(lines(rotated)) == ["first-request"])
            gateway.terminate()
            #expect(await gateway.waitForExit(timeout: .seconds(10)) == 0)
            #expect(!gateway.logLines.isEmpty && gateway.log.split(separator: "\n").count == lines(mainLog).count, "nothing on standard output")
        }
    }

    // logging.syslog: every line to a UDP collector (the "listening" line and the access lines, each with its severity),
    // nothing on standard output; with "lines": "access", only the access lines, the rest staying on standard output.
    @Test(.timeLimit(.minutes(1))) func syslogOutputs() async throws {
        let collector = try DatagramCollector(udpOn: "127.0.0.1")
        defer { collector.close() }
        func messages(until done: ([String]) -> Bool) -> [String] {
            var received: [String] = []
            while !done(received), let message = collector.receive() { received.append(message) }
            return received
        }
        try await withUpstreams { upstreams in
            let port = try await RedisServer.freePort()
            let everything = Self.config(upstreamPort: upstreams[0].port)
                .replacingOccurrences(of: #""port": 0"#, with: #""port": \#(port)"#)
                .replacingOccurrences(
                    of: #"{ "workers": 2,"#,
                    with: #"{ "workers": 2, "logging": { "syslog": { "address": "127.0.0.1:\#(collector.port)", "facility": "local3" } },"#)
            let gateway = try GatewayProcess(config: everything)
            try await gateway.start(listeningOn: port)
            let sent = try await shell("curl -s -o /dev/null -w '%{http_code}' -H 'X-Request-ID: via-syslog' http://127.0.0.1:\(port)/echo")
            #expect(sent.stdout == "200")
            let received = messages { $0.contains { $0.contains(#""request_id":"via-syslog""#) } }
            // local3 is facility 19: 19 * 8 + 6 (info).
            let listening = received.first { $0.contains(#""msg":"listening""#) }
            #expect(listening?.hasPrefix("<158>1 ") == true, "\(received)")
            let access = received.first { $0.contains(#""request_id":"via-syslog""#) }
            #expect(access?.hasPrefix("<158>1 ") == true && access?.contains(#""msg":"request""#) == true, "\(received)")
            gateway.terminate()
            #expect(await gateway.waitForExit(timeout: .seconds(10)) == 0)
            #expect(gateway.log.isEmpty, "nothing on standard output: \(gateway.log)")
        }
        try await withUpstreams { upstreams in
            let accessOnly = Self.config(upstreamPort: upstreams[0].port).replacingOccurrences(
                of: #"{ "workers": 2,"#,
                with: #"{ "workers": 2, "logging": { "syslog": { "address": "127.0.0.1:\#(collector.port)", "lines": "access", "format": "rfc3164" } },"#)
            let gateway = try GatewayProcess(config: accessOnly)
            try await gateway.start()
            _ = try await shell("curl -s -o /dev/null -H 'X-Request-ID: access-only' http://127.0.0.1:\(gateway.port)/echo")
            let received = messages { $0.contains { $0.contains(#""request_id":"access-only""#) } }
            let access = received.first { $0.contains(#""request_id":"access-only""#) }
            let pattern = #/<190>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ gateway\[\d+\]: \{.*\}/#
            let matched = access.flatMap { try? pattern.wholeMatch(in: $0) } != nil
            let otherLines = received.contains { $0.contains(#""msg":"listening""#) }
            let accessOnStandardOutput = gateway.logLines.contains { $0["msg"] as? String == "request" }
            #expect(matched, "\(received)")
            #expect(!otherLines, "only access lines")
            #expect(!accessOnStandardOutput, "access lines not on standard output")
            gateway.terminate()
            #expect(await gateway.waitForExit(timeout: .seconds(10)) == 0)
        }
    }

    // logging.access_log_format "combined": the access lines on standard output are NGINX's combined format with
    // the request id (what GoAccess or fail2ban read), the other lines stay JSON.
    @Test(.timeLimit(.minutes(1))) func combinedAccessLog() async throws {
        try await withUpstreams { upstreams in
            let config = Self.config(upstreamPort: upstreams[0].port).replacingOccurrences(
                of: #"{ "workers": 2,"#, with: #"{ "workers": 2, "logging": { "access_log_format": "combined" },"#)
            let gateway = try GatewayProcess(config: config)
            try await gateway.start()
            let sent = try await shell(
                "curl -s -o /dev/null -w '%{http_code} %{size_download}' -A 'probe/1.0' -e 'https://app.example/list?s=1' -H 'X-Request-ID: combined-1' 'http://127.0.0.1:\(gateway.port)/echo?token=secret'")
            let deadline = ContinuousClock.now + .seconds(10)
            var line: Substring?
            while line == nil && ContinuousClock.now < deadline {
                line = gateway.log.split(separator: "\n").first { $0.hasSuffix(#""combined-1""#) }
                if line == nil { try await Task.sleep(for: .milliseconds(20)) }
            }
            let parts = sent.stdout.split(separator: " ")
            let pattern = #/^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /echo HTTP/1\.1" (\d+) (\d+) "https://app\.example/list" "probe/1\.0" "combined-1"$/#
            let matched = line.flatMap { try? pattern.wholeMatch(in: String($0)) }
            let match = try #require(matched, "\(gateway.log)")
            #expect(String(match.1) == String(parts.first ?? "") && String(match.2) == String(parts.last ?? ""), "status and body bytes as curl saw them")
            #expect(!gateway.log.contains("secret"), "no query in the log")
            let messages = gateway.logLines.compactMap { $0["msg"] as? String }
            #expect(messages.contains("listening"), "other lines stay JSON")
            gateway.terminate()
            #expect(await gateway.waitForExit(timeout: .seconds(10)) == 0)
        }
    }

    // auth.api_keys_file: keys kept apart from gateway.json, picked up when the file changes (reload.watch);
    // a broken file changes nothing, and gateway check names the bad entry.
    @Test(.timeLimit(.minutes(1))) func apiKeysFileIsReloaded() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let keysFile = directory.appendingPathComponent("keys.json")
        func entry(_ id: String, _ key: String) -> String { #"{ "id": "\#(id)", "sha256": "\#(APIKeyDigest.hex(key))", "scopes": ["read"] }"# }
        try "[\(entry("svc-a", "gw_key-a"))]".write(to: keysFile, atomically: true, encoding: .utf8)
        try await withUpstreams { upstreams in
            let config = """
                { "workers": 1, "reload": { "watch": true, "interval_ms": 100 },
                  "listeners": [{ "name": "public", "address": "127.0.0.1", "port": 0 }],
                  "auth": { "api_keys_file": "\(keysFile.path)" },
                  "upstreams": { "demo": { "targets": ["http://127.0.0.1:\(upstreams[0].port)"] } },
                  "routes": [{ "name": "all", "upstream": "demo", "auth": { "require": ["api_key"] } }] }
                """
            let gateway = try GatewayProcess(config: config)
            try await gateway.start()
            func status(_ key: String) async throws -> String {
                try await shell("curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: \(key)' http://127.0.0.1:\(gateway.port)/echo").stdout
            }
            let first = (try await status("gw_key-a"), try await status("gw_key-b"))
            #expect(first == ("200", "401"))

            try "[\(entry("svc-a", "gw_key-a")), \(entry("svc-b", "gw_key-b"))]".write(to: keysFile, atomically: true, encoding: .utf8)
            var added = ""
            let deadline = ContinuousClock.now + .seconds(10)
            while added != "200" && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                added = try await status("gw_key-b")
            }
            #expect(added == "200", "\(gateway.log)")

            try #"[{ "id": "svc-c", "sha256": "not-a-digest" }]"#.write(to: keysFile, atomically: true, encoding: .utf8)
            var refused = false
            let second = ContinuousClock.now + .seconds(10)
            while !refused && ContinuousClock.now < second {
                try await Task.sleep(for: .milliseconds(50))
                refused = gateway.log.contains("config reload failed; still running the previous config")
            }
            #expect(refused)
            #expect(try await status("gw_key-b") == "200", "the previous keys stay")
            gateway.terminate()
            _ = await gateway.waitForExit(timeout: .seconds(10))

            let configFile = directory.appendingPathComponent("gateway.json")
            try config.write(to: configFile, atomically: true, encoding: .utf8)
            let checked = try await runCommand(Binaries.gateway, ["check", "--config", configFile.path], timeout: .seconds(20))
            #expect(checked.status == 1)
            #expect(checked.stdout.contains("auth.api_keys_file[0].sha256: expected 64 hex characters"), "\(checked.stdout)")
        }
    }

    // `gateway check` prints every problem with its path and exits 1, or prints ok.
    @Test func checkCommand() async throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("GatewayConfigTests/Fixtures")
        let bad = try await runCommand(Binaries.gateway, ["check", "--config", fixtures.appendingPathComponent("mistakes.json").path])
        #expect(bad.status == 1)
        let expected = try String(contentsOf: fixtures.appendingPathComponent("mistakes.expected"), encoding: .utf8)
        #expect(bad.stdout == expected)
        #expect(bad.stdout.contains(#"routes[2].upstream: unknown upstream "ordres" (did you mean "orders"?)"#))

        let good = try await runCommand(Binaries.gateway, ["check", "--config", fixtures.appendingPathComponent("valid-minimal.json").path])
        #expect(good.status == 0)
        #expect(good.stdout == "ok\n")

        let missing = try await runCommand(Binaries.gateway, ["check", "--config", "/nonexistent/gateway.json"])
        #expect(missing.status == 1)
        #expect(missing.stdout == "/nonexistent/gateway.json does not exist\n")

        let version = try await runCommand(Binaries.gateway, ["version"])
        #expect(version.status == 0)
        #expect(version.stdout.hasPrefix("gateway "))
    }

    // `gateway run` refuses a broken config with JSON log lines naming each problem, and exits 1.
    @Test func runRefusesBrokenConfig() async throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("broken-\(UUID().uuidString).json")
        try #"{ "listeners": [], "upstreams": {}, "routes": [{ "name": "r", "upstream": "nope" }] }"#.write(
            to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        let result = try await runCommand(Binaries.gateway, ["run", "--config", url.path], timeout: .seconds(20))
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        let listenerError = lines.contains { $0["path"] as? String == "listeners" && $0["level"] as? String == "error" }
        let upstreamError = lines.contains { $0["path"] as? String == "routes[0].upstream" }
        #expect(listenerError)
        #expect(upstreamError)

        // A log file that cannot be made stops the start too, saying so on standard output (and `check` says it).
        try #"{ "listeners": [{ "name": "l", "port": 0 }], "logging": { "file": "/nonexistent-directory/gateway.log" }, "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
            .write(to: url, atomically: true, encoding: .utf8)
        let unopenable = try await runCommand(Binaries.gateway, ["run", "--config", url.path], timeout: .seconds(20))
        #expect(unopenable.status == 1)
        let logFileError = unopenable.stdout.split(separator: "\n").contains {
            $0.contains(#""path":"logging.file""#) && $0.contains("cannot create or write /nonexistent-directory/gateway.log: No such file or directory")
        }
        #expect(logFileError, "\(unopenable.stdout)")
        let checked = try await runCommand(Binaries.gateway, ["check", "--config", url.path], timeout: .seconds(20))
        #expect(checked.status == 1 && checked.stdout.contains("logging.file: cannot create or write"))

        // So does a syslog socket with no daemon behind it.
        try #"{ "listeners": [{ "name": "l", "port": 0 }], "logging": { "syslog": { "address": "unix:/nonexistent-directory/log" } }, "upstreams": { "u": { "targets": ["http://127.0.0.1:9"] } }, "routes": [{ "name": "r", "upstream": "u" }] }"#
            .write(to: url, atomically: true, encoding: .utf8)
        let noDaemon = try await runCommand(Binaries.gateway, ["run", "--config", url.path], timeout: .seconds(20))
        #expect(noDaemon.status == 1)
        let syslogError = noDaemon.stdout.split(separator: "\n").contains {
            $0.contains(#""path":"logging.syslog.address""#) && $0.contains("No such file or directory")
        }
        #expect(syslogError, "\(noDaemon.stdout)")
        let checkedSyslog = try await runCommand(Binaries.gateway, ["check", "--config", url.path], timeout: .seconds(20))
        #expect(checkedSyslog.status == 1 && checkedSyslog.stdout.contains("logging.syslog.address: No such file or directory"), "\(checkedSyslog.stdout)")
    }
}
