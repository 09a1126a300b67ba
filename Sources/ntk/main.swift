print("ntk")
