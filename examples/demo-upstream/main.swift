import DemoUpstream
import Foundation
import Synchronization

// demo-upstream [--host 127.0.0.1] [--port 9001] [--name a] [--delay-ms N] [--fail-status N] [--http2 1]
var host = "127.0.0.1"
var port = 9001
var name = "demo"
var http2 = false
let behaviour = DemoUpstream.Behaviour()
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { break }
    switch flag {
    case "--host": host = value
    case "--port": port = Int(value) ?? port
    case "--name": name = value
    case "--delay-ms": behaviour.delayMs.store(Int(value) ?? 0, ordering: .relaxed)
    case "--fail-status": behaviour.failStatus.store(Int(value) ?? 0, ordering: .relaxed)
    case "--http2": http2 = value == "1"  // HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1
    default:
        FileHandle.standardError.write("unknown option \(flag)\n".data(using: .utf8)!)
        exit(2)
    }
}
let server = try await DemoUpstream.start(host: host, port: port, name: name, behaviour: behaviour, http2: http2)
FileHandle.standardOutput.write(
    #"{"msg":"demo upstream listening","upstream":"\#(name)","address":"\#(host)","port":\#(server.port)}"#.data(using: .utf8)! + Data("\n".utf8))
// Serve until killed.
while true { try await Task.sleep(for: .seconds(3600)) }
