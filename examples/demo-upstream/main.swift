import DemoUpstream
import Foundation

// demo-upstream [--host 127.0.0.1] [--port 9001] [--name a]
var host = "127.0.0.1"
var port = 9001
var name = "demo"
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { break }
    switch flag {
    case "--host": host = value
    case "--port": port = Int(value) ?? port
    case "--name": name = value
    default:
        FileHandle.standardError.write("unknown option \(flag)\n".data(using: .utf8)!)
        exit(2)
    }
}
let server = try await DemoUpstream.start(host: host, port: port, name: name)
FileHandle.standardOutput.write(
    #"{"msg":"demo upstream listening","upstream":"\#(name)","address":"\#(host)","port":\#(server.port)}"#.data(using: .utf8)! + Data("\n".utf8))
// Serve until killed.
while true { try await Task.sleep(for: .seconds(3600)) }
